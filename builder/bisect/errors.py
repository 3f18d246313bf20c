"""Typed errors of the bisect stage, on builder.errors: one line each, with the CLI's exit code
(1 = a step failed, 2 = bad input, 3 = a service, 130 = interrupted with the state saved)."""

from __future__ import annotations

from pathlib import Path

from builder.errors import BuilderError, InputError


class BisectError(BuilderError):
    """A bisect that cannot go on (an endpoint that does not show the problem, no convergence)."""


class BisectInputError(InputError):
    """Bad input: a ref, a path filter or a state file that must change."""


class GitError(BisectInputError):
    """git failed: an unknown ref, a ref that is not an ancestor, a repository that is not one."""


class StateError(BisectInputError):
    """A state or cache file that cannot be read, or belongs to another bisect."""


class BisectInterrupted(BuilderError):
    """Ctrl-C: the state was saved; running the same command again resumes."""

    exit_code = 130

    def __init__(self, state_file: Path):
        self.state_file = state_file
        super().__init__(f"bisect interrupted; state saved to {state_file}: run the same command to resume")
