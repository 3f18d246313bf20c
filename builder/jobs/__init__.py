"""Stage 5, jobs: a selected cell made ready to build and prove, outside any command: its engine module, smoke
settings, patch records and templates, in the order the cells depend on each other, and its rendering."""
