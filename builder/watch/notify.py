"""The notification hook: one JSON document per verdict, to a command (argv, the JSON on stdin, no
shell) or appended to a file (one JSON document per line)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from builder.errors import InputError, StepFailed

NOTIFY_TIMEOUT_S = 60


@dataclass(frozen=True, kw_only=True)
class Hook:
    kind: Literal["command", "file"]
    argv: tuple[str, ...] = ()
    path: Path | None = None


def parse_hook(value: str) -> Hook:
    """`--notify`: a command when its first word is an executable (a path or on PATH), else a file.
    Words are split as a shell would quote them, but no shell runs: no $, no pipes, no globs."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"--notify: {value!r} is not a command or a file ({exc})") from None
    if not words:
        raise InputError("--notify: empty; give a command (e.g. 'notify-send watch') or a file")
    first = words[0]
    if shutil.which(first):  # an executable: a path with the x bit, or a name on PATH
        return Hook(kind="command", argv=tuple(words))
    path = Path(value)
    if path.is_dir() or not path.parent.is_dir():
        raise InputError(f"--notify: {value!r} is neither an executable command nor a file in an existing directory")
    return Hook(kind="file", path=path)


def send(hook: Hook, document: dict[str, Any]) -> None:
    """Deliver one verdict; a command that fails is a StepFailed naming its exit status."""
    text = json.dumps(document, sort_keys=True)
    if hook.kind == "file":
        assert hook.path is not None
        with hook.path.open("a", encoding="utf-8") as out:
            out.write(text + "\n")
        return
    try:
        done = subprocess.run(list(hook.argv), input=text + "\n", text=True, capture_output=True,
                              timeout=NOTIFY_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepFailed(f"--notify {hook.argv[0]}: {type(exc).__name__}") from None
    if done.returncode != 0:
        raise StepFailed(f"--notify {hook.argv[0]} exited {done.returncode}")
