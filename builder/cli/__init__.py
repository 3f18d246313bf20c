"""The `builder` command line: thin. Each command parses, calls a stage and prints; errors become
one line on stderr with the error's exit code. Nothing outside cli/ imports it.

The command table: matrix, render (cli/matrix.py); build, base (cli/build.py); bases
(cli/bases.py); patches (cli/patches.py); smoke (cli/smoke.py); audit (cli/audit.py); promote,
known-good (cli/promote.py); ci (cli/ci.py).
"""

from __future__ import annotations

import signal
import sys

import typer

from builder.cli import audit, build, matrix, promote, smoke  # noqa: F401  (they register their commands)
from builder.cli.app import app
from builder.cli.bases import bases_app
from builder.cli.ci import ci_app
from builder.cli.patches import patches_app
from builder.errors import BuilderError

app.command("smoke")(smoke.smoke_command)
app.command("audit")(audit.audit_command)
app.command("promote")(promote.promote_command)
app.add_typer(promote.known_good_app, name="known-good")
app.add_typer(patches_app, name="patches")
app.add_typer(ci_app, name="ci")
app.add_typer(build.base_app, name="base")
app.add_typer(bases_app, name="bases")


def main() -> None:
    # Usage errors (unknown option, missing value) are click's: usage line, one error line, exit 2.
    # Everything the commands raise is a BuilderError: one line, its own exit code, no traceback.
    # SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C, so cleanups (running builds,
    # smoke-test containers) happen either way.
    signal.signal(signal.SIGTERM, _interrupt)
    # (click turns Ctrl-C into "Aborted!" and exit 1 after the cleanups have run.)
    try:
        app()
    except BuilderError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
