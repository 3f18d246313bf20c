"""Stage 4, render: a cell's self-contained build context and its content hash."""
