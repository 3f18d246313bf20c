"""`builder build`: render, skip what the registry already has, build through BuildKit, push.

Per cell: the checked build context (a patch CONFLICT stops the cell before anything runs), a
registry lookup of the immutable tag (present: "up to date", no build), the build with its log
in a file, the push, and the digest recorded. Only immutable tags are pushed here; the friendly
tag moves only by promotion, so an interrupted build can never leave a half-done friendly tag.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from builder.buildkit.plan import (
    BuildTool,
    ImageNames,
    build_labels,
    cell_plan,
)
from builder.buildkit.progress import Progress, buildkit_step, elapsed, tail
from builder.errors import BuilderError, StepFailed
from builder.matrix.cells import Cell
from builder.oci import dockerd
from builder.render.context import BuildContext, write_context
from builder.util import utc_now

CellStatus = Literal["built", "up to date", "failed", "not started"]


@dataclass(frozen=True)
class BuildOptions:
    workdir: Path
    secrets: dict[str, Path]  # BuildKit secret id -> file (CA bundle, tokens): never args or labels
    jobs: int = 1
    keep_going: bool = False
    revision: str = ""  # the factory's git commit, for org.opencontainers.image.revision
    max_jobs: int | None = None  # overrides the memory-based cap; not part of the content hash


@dataclass(frozen=True)
class CellResult:
    cell_id: str
    status: CellStatus
    image: str = ""
    digest: str = ""
    seconds: float = 0.0
    log: Path | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("built", "up to date")


class Builder:
    def __init__(self, tool: BuildTool, names: ImageNames, registry, prepare, options: BuildOptions,
                 progress: Progress):
        self.tool, self.names, self.registry, self.options = tool, names, registry, options
        self.prepare = prepare  # cell -> BuildContext (checked against the source)
        self.progress = progress
        self.cancel = threading.Event()
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._docker = None
        self._built: dict[str, str] = {}

    @property
    def docker(self):
        if self._docker is None:
            self._docker = dockerd.connect()
        return self._docker

    def build_all(self, cells: list[Cell], needs: Mapping[str, str] | None = None) -> list[CellResult]:
        """Build the cells in order (`--jobs` at once). `needs`: cell id -> the cell whose image it is
        built FROM; such a cell starts only after that one is pushed, and not at all when it failed."""
        results: dict[str, CellResult] = {}
        done = {cell.id: threading.Event() for cell in cells}
        failed = threading.Event()
        needs = needs or {}

        def run(cell: Cell) -> None:
            try:
                base = needs.get(cell.id)
                if base in done:
                    while not done[base].wait(0.2) and not self.cancel.is_set():
                        pass  # bounded by that build, which has its own limits
                    if not results.get(base, CellResult(base, "not started")).ok:
                        results[cell.id] = CellResult(cell.id, "not started", error=f"its base {base} was not built")
                        failed.set()
                        return
                if self.cancel.is_set() or (failed.is_set() and not self.options.keep_going):
                    results[cell.id] = CellResult(cell.id, "not started", error="an earlier cell failed"
                                                  if failed.is_set() else "interrupted")
                    return
                result = self.build_one(cell)
                results[cell.id] = result
                if result.ok:
                    with self._lock:
                        self._built[cell.id] = result.digest
                else:
                    failed.set()
            finally:
                done[cell.id].set()

        # Ctrl-C, and SIGTERM (the CLI turns it into KeyboardInterrupt), stop the running builds.
        with ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool:
            futures = [pool.submit(run, cell) for cell in cells]
            try:
                for future in futures:
                    while not future.done():
                        time.sleep(0.2)  # keeps the main thread responsive to signals
                    future.result()
            except KeyboardInterrupt:
                self.interrupt()
                raise
        return [results[c.id] for c in cells]

    def built_digests(self) -> dict[str, str]:
        """cell id -> digest of each image pushed (or found up to date) so far in this run."""
        with self._lock:
            return dict(self._built)

    def interrupt(self) -> None:
        """Stop every running build (its process group); nothing further is pushed."""
        self.cancel.set()
        with self._lock:
            for child in self._children:
                try:
                    os.killpg(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def build_one(self, cell: Cell) -> CellResult:
        started = time.monotonic()
        logs = self.options.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{cell.id}.log"
        log.unlink(missing_ok=True)  # a failure must never show an earlier run's log lines
        try:
            self.progress.say(cell.id, "rendering the build context")
            context = self.prepare(cell)
            image = self.names.immutable(context.cell.id, context.content_hash)
            found = self.registry.head_manifest(self.names.repository, context.immutable_tag)
            if found is not None:
                self._record(cell, context, image, found.digest, {"status": "up to date", **_base_record(context)})
                self.progress.finish(cell.id, f"up to date: {image} ({found.digest[:19]})")
                return CellResult(cell.id, "up to date", image, found.digest, time.monotonic() - started, None)
            self._check_cancel(cell)
            digest = self._build_and_push(cell, context, image, log)
            self.progress.finish(cell.id, f"built and pushed {image} in {elapsed(time.monotonic() - started)}")
            return CellResult(cell.id, "built", image, digest, time.monotonic() - started, log)
        except OSError as exc:  # a read-only workdir, a full disk
            return self._failed(cell, started, log, StepFailed(f"{cell.id}: {exc.strerror or exc}: "
                                                               f"{exc.filename or self.options.workdir}"))
        except BuilderError as exc:
            return self._failed(cell, started, log, exc)

    def _failed(self, cell: Cell, started: float, log: Path, exc: BuilderError) -> CellResult:
        message = str(exc)
        if log.exists() and log.stat().st_size:
            message += f"\n--- last lines of {log} ---\n{tail(log)}"
        self.progress.finish(cell.id, f"FAILED: {message}")
        return CellResult(cell.id, "failed", seconds=time.monotonic() - started,
                          log=log if log.exists() else None, error=str(exc))

    def _build_and_push(self, cell: Cell, context: BuildContext, image: str, log: Path) -> str:
        chosen = context.base
        from_text = chosen.from_text if chosen else cell.base_image
        base = dockerd.ensure_base(self.docker, from_text, self._auth_for(from_text))
        if chosen is not None and chosen.local and base.id != chosen.digest:
            raise StepFailed(f"{cell.id}: base image {chosen.reference} changed after it was resolved "
                             f"({chosen.digest} -> {base.id}); nothing built, run the build again")
        base_digest = chosen.digest if chosen else base.id
        created = utc_now()
        labels = build_labels(context, created, self.options.revision, base_digest)
        plan = cell_plan(self.tool, self.names, context, self.options.workdir, self.options.secrets, labels,
                         self.options.max_jobs)
        if write_context(context, self.options.workdir / "contexts") != plan.context_dir:
            raise StepFailed(f"{cell.id}: the context was written outside the plan's {plan.context_dir}")
        plan.iidfile.unlink(missing_ok=True)
        log.with_suffix(".cmd").write_text(plan.build.shell() + "\n")  # the exact command, beside its log
        self._run(cell, plan.build, log)
        if self.cancel.is_set():
            raise StepFailed(f"{cell.id}: interrupted; nothing pushed")
        if chosen is not None and chosen.local:
            self._check_built_on(cell, chosen.reference, base, plan.iidfile)
        self.progress.say(cell.id, f"pushing {image}")
        with open(log, "a") as handle:
            digest = dockerd.push(self.docker, image, self.registry.docker_auth(),
                                 on_line=lambda line: handle.write(f"push: {line}\n"))
        found = self.registry.head_manifest(self.names.repository, context.immutable_tag)
        if found is None or found.digest != digest:
            raise StepFailed(f"{image}: the registry does not show the pushed digest {digest}")
        self._record(cell, context, image, digest,
                     {"status": "built", **_base_record(context), "base_digest": base_digest, "created": created})
        return digest

    def _record(self, cell: Cell, context: BuildContext, image: str, digest: str, extra: dict) -> None:
        """logs/<cell>.json: what this run produced or found (CI keeps it as an artifact)."""
        (self.options.workdir / "logs" / f"{cell.id}.json").write_text(json.dumps(
            {"cell": cell.id, "image": image, "digest": digest, "content_hash": context.content_hash, **extra},
            indent=2) + "\n")

    def _check_built_on(self, cell: Cell, reference: str, base: dockerd.LocalImage, iidfile: Path) -> None:
        """A local base is named by tag in the FROM line: the built image must start with the
        layers of the image whose id was hashed (a re-created base has other layers)."""
        built = dockerd.inspect_image(self.docker, iidfile.read_text().strip()) if iidfile.is_file() else None
        if built is None or built.layers[:len(base.layers)] != base.layers:
            raise StepFailed(f"{cell.id}: the built image does not sit on {reference} ({base.id}): the base "
                             "was replaced during the build; nothing pushed, run the build again")

    def _check_cancel(self, cell: Cell) -> None:
        if self.cancel.is_set():
            raise StepFailed(f"{cell.id}: interrupted; nothing built or pushed")

    def _auth_for(self, reference: str) -> dict | None:
        """Registry credentials for pulls from our own registry (a base built by an earlier cell)."""
        return self.registry.docker_auth() if reference.startswith(self.names.registry + "/") else None

    def _run(self, cell: Cell, step, log: Path) -> None:
        env = {**os.environ, **step.env}
        with open(log, "w") as handle:
            handle.write(f"# {step.shell()}\n")
            handle.flush()
            with self._lock:  # checked under the lock interrupt() takes: no build starts after it
                self._check_cancel(cell)
                child = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                         text=True, errors="replace", start_new_session=True)
                self._children.add(child)
            try:
                for line in child.stdout or ():  # stdout=PIPE: always set
                    handle.write(line)
                    current = buildkit_step(line)
                    if current:
                        self.progress.step(cell.id, current)
                code = child.wait()
            finally:
                with self._lock:
                    self._children.discard(child)
        if code != 0:
            raise StepFailed(f"{cell.id}: build failed (exit {code}); log {log}")


def _base_record(context: BuildContext) -> dict:
    base = context.base
    if base is None:
        return {}
    return {"base": {"reference": base.reference, "digest": base.digest, "from": base.from_text,
                     "local": base.local, "origin": base.origin}}


def summary_rows(results: list[CellResult]) -> list[list[str]]:
    return [[r.cell_id, r.status, r.image or "-", (r.digest[:19] if r.digest else "-"), elapsed(r.seconds),
             str(r.log) if r.log and not r.ok else ""] for r in results]
