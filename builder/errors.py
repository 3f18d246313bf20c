"""Typed errors. Each carries the exit code the CLI returns for it.

Exit codes: 1 = a step failed (build, push, check); 2 = bad input (file, line or argument named);
3 = an external service (Docker Engine, registry) is unreachable or refused us.
"""

from __future__ import annotations


class BuilderError(Exception):
    """Base class: a failure the CLI reports as one line, without a traceback."""

    exit_code = 1


class InputError(BuilderError):
    """Bad input from the user: a file, a line or an argument that must change."""

    exit_code = 2


class ConfigError(InputError):
    """A malformed configuration file; the message starts with `file:line:`."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path = path
        self.line = line
        self.detail = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class ServiceError(BuilderError):
    """The Docker Engine or a registry is unreachable, or refused the request."""

    exit_code = 3


class StepFailed(BuilderError):
    """A build, push, patch or smoke step failed; the message names the log."""

    exit_code = 1
