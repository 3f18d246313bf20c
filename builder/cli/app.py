"""The typer application every command module registers on."""

from __future__ import annotations

import typer

from builder import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Build, patch, test and promote LLM inference-engine images from matrix.yaml.\n\n"
                       "Example: builder build --arch sm_121a --dry-run")


@app.callback(invoke_without_command=True)
def _version(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(__version__)
        raise typer.Exit()
