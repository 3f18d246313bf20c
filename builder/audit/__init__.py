"""Stage 7, audit: can the CUDA code in an engine image, wheel or directory run on the cell's GPU arch? Rules (pure), verdicts, cuobjdump, and `builder audit`, before anything is built or booted."""
