"""Stage 6, build and push: the plan of docker commands, and the runner that executes it."""
