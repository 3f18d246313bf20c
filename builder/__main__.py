"""`python -m builder`: the `builder` command line, run as a module."""

from builder.cli import main

main()
