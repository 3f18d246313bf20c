"""The `builder` command line: thin. Each command parses, calls a stage and prints; errors become
one line on stderr with the error's exit code. Nothing outside cli/ imports it.

The command table: matrix, render (cli/matrix.py); build, base (cli/build.py); bases
(cli/bases.py); patches (cli/patches.py); smoke (cli/smoke.py); audit (cli/audit.py); promote,
known-good (cli/promote.py); keys, verify
(cli/attest.py); board (cli/board.py); bisect (cli/bisect.py); watch (cli/watch.py); ci (cli/ci.py).
"""

from __future__ import annotations

from typing import Any

import signal
import sys

import typer

from builder.cli import attest, audit, bisect, board, build, matrix, promote, smoke, watch  # noqa: F401  (they register their commands)
from builder.cli.app import app
from builder.cli.bases import bases_app
from builder.cli.ci import ci_app
from builder.cli.patches import patches_app
from builder.errors import BuilderError
from builder.safetext import SafeStream

app.command("smoke")(smoke.smoke_command)
app.command("audit")(audit.audit_command)
app.command("bisect")(bisect.bisect_command)
app.command("watch")(watch.watch_command)
app.command("promote")(promote.promote_command)
app.command("verify")(attest.verify_command)
app.add_typer(attest.keys_app, name="keys")
app.add_typer(promote.known_good_app, name="known-good")
app.add_typer(patches_app, name="patches")
app.add_typer(ci_app, name="ci")
app.add_typer(build.base_app, name="base")
app.add_typer(bases_app, name="bases")


# The CLI library's exception classes, wherever this typer keeps them (its own copy of click, or click).
_CLICK_EXCEPTION: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    # Every way out is one line on stderr with an exit code: usage errors (unknown option, bad or
    # missing value) 2, BuilderErrors their own code (2 bad input, 1 failed step, 3 unreachable
    # service), an OSError nobody expected 1. No traceback, no four-line usage block.
    # SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C, so cleanups (running builds,
    # smoke-test containers) happen either way.
    signal.signal(signal.SIGTERM, _interrupt)
    # Everything a command prints passes through one filter: credentials masked, control characters
    # from servers, registries and records escaped (builder/safetext.py).
    plain = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(sys.stdout), SafeStream(sys.stderr)
    try:
        _run()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = plain


def _run() -> None:
    try:
        code = app(standalone_mode=False)
    except _CLICK_EXCEPTION as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `builder` or `builder known-good` alone: the help
            exc.show()
            sys.exit(exc.exit_code)
        typer.echo(f"error: {_usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    except BuilderError as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


def _usage_line(exc) -> str:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "builder"
    hint = f" (see {command} --help)" if ctx is not None else ""
    return f"{command}: {_one_line(exc.format_message())}{hint}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt
