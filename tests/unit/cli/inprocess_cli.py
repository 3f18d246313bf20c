"""Run the `builder` CLI inside the test process, as `python -m builder ARGV` would run it.

`run_in_process(argv, cwd=..., env=..., timeout=...)` calls builder.cli.main() (the entry of
`python -m builder`: it maps errors to one stderr line and an exit code, and ends in sys.exit)
with sys.argv, the working directory, os.environ, stdin/stdout/stderr, warnings and logging set up
as the real process would have them, and gives back the exit code, stdout, stderr and what the
guards saw. Everything it changes is put back afterwards.

Guards (any attempt is recorded and refused, so the case fails even if the command then exits 2):

- network: socket.socket.connect/connect_ex/sendto/sendmsg (AF_INET, AF_INET6 and AF_UNIX alike,
  so the docker SDK's /var/run/docker.sock is covered), socket.create_connection and name
  resolution (getaddrinfo, gethostbyname[_ex]);
- child processes (the docker CLI, buildx, git, debootstrap, credential helpers): every
  subprocess.Popen (its _execute_child), os.system, os.posix_spawn[p], os.fork.
  Threads whose name starts with EXEMPT_THREAD_PREFIX (the corpus's own subprocess runners) pass.
- time: a SIGALRM after `timeout` seconds ends a run that blocks (a FIFO opened for reading, a
  read that never ends) with InProcessTimeout; code that spins inside C without returning to the
  interpreter is not interrupted, which is why such cases stay subprocesses.

State reset before every run (module-level state in builder/ that depends on cwd or environment):
see RESETS. Process state the CLI changes on purpose and that is put back after every run: the
SIGTERM handler (main() installs one), sys.excepthook (typer installs one). State checked after
every run (a leak is reported as a problem): the working directory, the SIGINT/SIGALRM handlers,
the umask, sys.path, the set of live threads, os.environ.

One shortcut: typer's get_command (the click command tree built from the Typer app) is built once
per app and reused across runs; it depends on nothing but the app.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer.main

EXEMPT_THREAD_PREFIX = "corpus-subprocess"


class InProcessTimeout(BaseException):
    """Raised by the SIGALRM handler; a BaseException so that no `except Exception` swallows it."""


class GuardRefused(ConnectionRefusedError):
    """What a guarded call raises: an OSError, as a closed port or a missing program would."""


# -- state in builder/ that a run must not inherit from the previous one --------------------------
def _reset_pypi_url(env: dict[str, str]) -> None:
    # builder/patching/sources.py reads BUILDER_PYPI_URL once, at import: the subprocess reads it
    # from its own environment, so each run gets the value its environment gives.
    from builder.patching import sources

    sources.PYPI_URL = env.get("BUILDER_PYPI_URL", "https://pypi.org")


def _reset_jinja_environments(env: dict[str, str]) -> None:
    # builder/render/context.py keeps one jinja2 Environment per tuple of template roots (paths
    # under the case's work dir): emptied so that no run sees another's loaders or caches.
    from builder.render import context

    context._ENVIRONMENTS.clear()


# (module, attribute, reset): the test suite checks that each still exists, so a refactor that
# moves one shows up as a failing harness test instead of silently leaking state.
RESETS: tuple[tuple[str, str, Callable[[dict[str, str]], None]], ...] = (
    ("builder.patching.sources", "PYPI_URL", _reset_pypi_url),
    ("builder.render.context", "_ENVIRONMENTS", _reset_jinja_environments),
)


# typer builds the click command tree from the Typer app on every call (about 30 ms, a third of an
# in-process run); the tree depends only on the app, so it is built once per app and reused.
_COMMANDS: dict[int, tuple[object, object]] = {}


def _command_built_once(original: Callable) -> Callable:
    def get_command(typer_instance):
        key = id(typer_instance)
        if key not in _COMMANDS or _COMMANDS[key][0] is not typer_instance:
            _COMMANDS[key] = (typer_instance, original(typer_instance))
        return _COMMANDS[key][1]

    get_command.__wrapped__ = original  # type: ignore[attr-defined]
    return get_command


def load_cli() -> Callable[[], None]:
    """Import the CLI (outside any timed run: the first import costs about a second)."""
    from builder.cli import main

    return main


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float
    attempts: list[str] = field(default_factory=list)  # network / process attempts the guards refused
    leaks: list[str] = field(default_factory=list)  # process state the run changed and did not put back
    timed_out: bool = False


# -- the guards -----------------------------------------------------------------------------------
class _Guards:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def _exempt(self) -> bool:
        return threading.current_thread().name.startswith(EXEMPT_THREAD_PREFIX)

    def wrap(self, kind: str, original: Callable, describe: Callable[..., str]) -> Callable:
        guards = self

        def guarded(*args, **kwargs):
            if guards._exempt():
                return original(*args, **kwargs)
            what = f"{kind}: {describe(*args, **kwargs)}"
            guards.attempts.append(what)
            raise GuardRefused(111, f"refused by the test's guard ({what})")

        guarded.__wrapped__ = original  # type: ignore[attr-defined]
        return guarded

    def install(self, mp: pytest.MonkeyPatch) -> None:
        def sock_target(sock, address, *rest, **kw):
            family = getattr(sock, "family", None)
            return f"{getattr(family, 'name', family)} {address!r}"[:200]

        for name in ("connect", "connect_ex"):
            mp.setattr(socket.socket, name, self.wrap("connect", getattr(socket.socket, name), sock_target))
        mp.setattr(socket.socket, "sendto",
                   self.wrap("sendto", socket.socket.sendto, lambda sock, data, *a: f"{a[-1]!r}"[:200]))
        mp.setattr(socket.socket, "sendmsg", self.wrap("sendmsg", socket.socket.sendmsg, lambda sock, *a, **k: "?"))
        mp.setattr(socket, "create_connection",
                   self.wrap("connect", socket.create_connection, lambda address, *a, **k: f"{address!r}"[:200]))
        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            mp.setattr(socket, name,
                       self.wrap("resolve", getattr(socket, name), lambda host, *a, **k: f"{host!r}"[:200]))

        def child(popen, args, *rest, **kw):
            return (" ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args))[:200]

        mp.setattr(subprocess.Popen, "_execute_child", self.wrap("process", subprocess.Popen._execute_child, child))
        mp.setattr(os, "system", self.wrap("process", os.system, lambda command: str(command)[:200]))
        for name in ("posix_spawn", "posix_spawnp"):
            if hasattr(os, name):
                mp.setattr(os, name, self.wrap("process", getattr(os, name),
                                               lambda path, argv, *a, **k: " ".join(map(str, argv))[:200]))
        mp.setattr(os, "fork", self.wrap("process", os.fork, lambda: "fork()"))


# -- the real process's surroundings --------------------------------------------------------------
def _stream(like, default_errors: str) -> io.TextIOWrapper:
    encoding = getattr(like, "encoding", None) or "utf-8"
    errors = getattr(like, "errors", None) or default_errors
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, newline=None, write_through=True)


def _read(stream: io.TextIOWrapper) -> str:
    with contextlib.suppress(ValueError):
        stream.flush()
    return stream.buffer.getvalue().decode(stream.encoding, errors="replace")


def _python_default_warning_filters() -> None:
    """The filters a plain `python` starts with (no -W, no PYTHONWARNINGS), not pytest's."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")


def _fake_main_module() -> types.ModuleType:
    """What sys.modules['__main__'] is under `python -m builder`: the CLI library names the program
    from it (usage errors say `python -m builder matrix: ...`)."""
    module = types.ModuleType("__main__")
    module.__package__ = "builder"
    return module


def _alarm(signum, frame):
    raise InProcessTimeout


def _handlers() -> dict[str, object]:
    return {sig.name: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}


def run_in_process(argv: list[str] | tuple[str, ...], *, cwd: Path, env: dict[str, str], timeout: float,
                   main: Callable[[], None] | None = None) -> Result:
    """Run `python -m builder *argv` in this process with exactly `env` as os.environ."""
    main = main or load_cli()
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_in_process needs the main thread (signals, cwd, environment)")
    guards = _Guards()
    out, err = _stream(sys.__stdout__, "strict"), _stream(sys.__stderr__, "backslashreplace")
    threads_before = set(threading.enumerate())
    handlers_before = _handlers()
    umask_before = os.umask(0o022)
    os.umask(umask_before)
    path_before = list(sys.path)
    environ_before = dict(os.environ)
    code, timed_out, trace = 0, False, ""
    with pytest.MonkeyPatch.context() as mp, open(os.devnull, encoding="utf-8") as devnull:
        mp.chdir(cwd)
        for key in list(os.environ):
            if key not in env:
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        for _module, _attr, reset in RESETS:
            reset(env)
        # argv[0] and __main__ as under `python -m builder` (the CLI library names the program from them)
        mp.setattr(sys, "argv", [str(Path(sys.modules["builder"].__file__).parent / "__main__.py"), *argv])
        mp.setitem(sys.modules, "__main__", _fake_main_module())
        mp.setattr(sys, "stdin", devnull)
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        mp.setattr(sys, "excepthook", sys.excepthook)  # typer's Typer.__call__ installs its own: put back after
        mp.setattr(typer.main, "get_command", _command_built_once(typer.main.get_command))
        mp.setattr(logging.root, "handlers", [])  # no pytest capture handler: logging.lastResort prints, as in python
        guards.install(mp)
        previous_alarm = signal.signal(signal.SIGALRM, _alarm)
        started = time.monotonic()
        try:
            with warnings.catch_warnings(record=True) as caught:
                _python_default_warning_filters()
                try:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                    try:
                        main()
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except SystemExit as exc:
                    if exc.code is None:
                        code = 0
                    elif isinstance(exc.code, int):
                        code = exc.code
                    else:  # sys.exit("text"): Python prints it and exits 1
                        print(exc.code, file=err)
                        code = 1
                except InProcessTimeout:
                    timed_out, code = True, -1
                except BaseException:  # noqa: BLE001  (what the interpreter would print before exiting 1)
                    trace = traceback.format_exc()
                    code = 1
            for warning in caught:
                err.write(warnings.formatwarning(warning.message, warning.category, warning.filename,
                                                 warning.lineno, warning.line))
            if trace:
                err.write(trace)
        finally:
            seconds = time.monotonic() - started
            signal.signal(signal.SIGALRM, previous_alarm)
            leaks = []
            if Path.cwd() != Path(cwd):
                leaks.append(f"cwd changed to {Path.cwd()}")
            changed_env = {k for k in set(os.environ) | set(env) if os.environ.get(k) != env.get(k)}
            if changed_env:
                leaks.append(f"os.environ changed: {sorted(changed_env)[:5]}")
    # the monkeypatch is undone: cwd, environment, sys.*, socket and subprocess are as before, except
    # what the run changed behind its back
    if dict(os.environ) != environ_before:
        os.environ.clear()
        os.environ.update(environ_before)
    handlers_after = _handlers()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        if handlers_after[sig.name] != handlers_before[sig.name]:
            if sig != signal.SIGTERM:  # main() installs its SIGTERM handler on purpose: not a leak
                leaks.append(f"{sig.name} handler changed")
            signal.signal(sig, handlers_before[sig.name])
    umask_after = os.umask(umask_before)
    if umask_after != umask_before:
        leaks.append(f"umask changed to {umask_after:o}")
    if sys.path != path_before:
        leaks.append("sys.path changed")
        sys.path[:] = path_before
    new_threads = [t.name for t in set(threading.enumerate()) - threads_before
                   if t.is_alive() and not t.name.startswith(EXEMPT_THREAD_PREFIX)]
    if new_threads:
        leaks.append(f"threads left running: {new_threads[:5]}")
    return Result(code, _read(out), _read(err), seconds, guards.attempts, leaks, timed_out)
