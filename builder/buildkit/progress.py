"""Progress lines for long work: cells done/total, the current step, elapsed time.

Plain lines (no cursor tricks) so a CI log reads the same as a terminal; a cell's step line is
printed when the step changes, and at most every `interval` seconds otherwise.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

_BUILDKIT_STEP = re.compile(r"^#\d+ \[(?:[\w-]+ )?(\d+/\d+)\] (.+)$")


def elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def buildkit_step(line: str) -> str | None:
    """`#7 [2/4] RUN pip install ...` -> `2/4 RUN pip install ...` (None for other lines)."""
    match = _BUILDKIT_STEP.match(line.strip())
    return f"{match.group(1)} {match.group(2)[:100]}" if match else None


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


class Progress:
    def __init__(self, total: int, stream=None, interval: float = 15.0):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.interval = interval
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self._last: dict[str, tuple[str, float]] = {}

    def say(self, cell_id: str, message: str) -> None:
        with self.lock:
            print(f"[{self.done}/{self.total} done {elapsed(time.monotonic() - self.started)}] "
                  f"{cell_id}: {message}", file=self.stream, flush=True)

    def step(self, cell_id: str, step: str) -> None:
        now = time.monotonic()
        last = self._last.get(cell_id)
        if last and last[0] == step and now - last[1] < self.interval:
            return
        self._last[cell_id] = (step, now)
        self.say(cell_id, step)

    def finish(self, cell_id: str, message: str) -> None:
        with self.lock:
            self.done += 1
        self.say(cell_id, message)
