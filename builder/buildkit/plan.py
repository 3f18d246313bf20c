"""The build plan: for each cell, every docker command the build runs, in order (pure).

`builder build --dry-run` prints it; the build executes the same argv lists, so what the plan
shows is what runs. Secrets appear only as `--secret id=...,src=PATH` (a path, never a value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from builder.names import CONTENT_HASH_LABEL, ImageNames
from builder.render.context import BuildContext
from builder.util import redact


@dataclass(frozen=True)
class BuildTool:
    """How BuildKit is reached: `docker buildx build`, or `DOCKER_BUILDKIT=1 docker build`."""

    kind: Literal["buildx", "buildkit"]
    docker: str = "docker"  # the docker client binary
    note: str = ""
    cache_export: bool = False  # the buildx driver can export a registry cache (not the `docker` driver)

    def describe(self) -> str:
        how = "docker buildx build" if self.kind == "buildx" else "DOCKER_BUILDKIT=1 docker build (no buildx)"
        return f"{how} via {self.docker}" + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        """A copy-pasteable rendering (for plans and logs; the build runs argv without a shell)."""
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        args = " ".join(_quote(a) for a in self.argv)
        return f"{env} {args}".strip() if self.argv else f"# {self.what}"


def _quote(arg: str) -> str:
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")
    return arg if arg and set(arg) <= safe else "'" + arg.replace("'", "'\"'\"'") + "'"


@dataclass(frozen=True, kw_only=True)
class CellPlan:
    """What `--dry-run` prints and what the runner executes: the runner reads `build.argv` from here
    and re-derives nothing."""
    context: BuildContext
    context_dir: Path
    iidfile: Path
    image: str  # the immutable reference this build pushes
    friendly: str
    lookup: Step
    render: Step
    build: Step
    push: Step

    @property
    def steps(self) -> tuple[Step, ...]:
        return (self.lookup, self.render, self.build, self.push)


@dataclass(frozen=True)
class BuildPlan:
    tool: BuildTool
    cells: tuple[CellPlan, ...]


def build_labels(context: BuildContext, created: str, revision: str, base_digest: str) -> dict[str, str]:
    """Labels known only at build time (the rest are in the rendered Dockerfile)."""
    return {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": redact(context.cell.engine.git or ""),
        "org.opencontainers.image.base.digest": base_digest,
        CONTENT_HASH_LABEL: context.content_hash,
    }


def build_step(tool: BuildTool, context: BuildContext, context_dir: Path, image: str,
               secrets: dict[str, Path], labels: dict[str, str], iidfile: Path,
               cache_ref: str | None = None, extra_args: dict[str, str] | None = None) -> Step:
    """extra_args: build arguments that shape how, not what, is built (MAX_JOBS): outside the hash."""
    argv = [tool.docker]
    env: dict[str, str] = {}
    if tool.kind == "buildx":
        argv += ["buildx", "build", "--load"]
        if cache_ref and tool.cache_export:  # registry cache shared between runners
            argv += ["--cache-from", f"type=registry,ref={cache_ref}",
                     "--cache-to", f"type=registry,ref={cache_ref},mode=max"]
    else:
        argv += ["build"]
        env["DOCKER_BUILDKIT"] = "1"
    argv += ["--progress=plain", "--platform", context.cell.platform, "--iidfile", str(iidfile), "--tag", image]
    for key, value in sorted({**context.build_args, **(extra_args or {})}.items()):
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    for secret_id, path in sorted(secrets.items()):
        argv += ["--secret", f"id={secret_id},src={path}"]
    argv.append(str(context_dir))
    return Step(f"build {context.cell.id}", tuple(argv), env)


def cache_ref(tool: BuildTool, names: ImageNames, cell_id: str) -> str | None:
    """Where buildx keeps the cell's layer cache in the registry, shared by every runner."""
    return f"{names.repo}:buildcache-{cell_id}" if tool.kind == "buildx" and tool.cache_export else None


def how_args(max_jobs: int | None) -> dict[str, str]:
    """Build arguments that change how, not what, is built: outside the content hash and the tag."""
    return {"MAX_JOBS": str(max_jobs)} if max_jobs else {}


def cell_plan(tool: BuildTool, names: ImageNames, context: BuildContext, workdir: Path,
              secrets: dict[str, Path], labels: dict[str, str], max_jobs: int | None = None) -> CellPlan:
    image = names.immutable(context.cell.id, context.content_hash)
    context_dir = workdir / "contexts" / context.cell.id
    iidfile = workdir / "logs" / f"{context.cell.id}.iid"
    return CellPlan(
        context=context, context_dir=context_dir, iidfile=iidfile, image=image,
        friendly=names.friendly(context.cell.id),
        lookup=Step(f"ask the registry whether {image} exists (HTTP HEAD /v2/{names.repository}/manifests/"
                    f"{context.immutable_tag}); if it does: up to date, stop here"),
        render=Step(f"render the build context into {context_dir}"),
        build=build_step(tool, context, context_dir, image, secrets, labels, iidfile,
                         cache_ref(tool, names, context.cell.id), how_args(max_jobs)),
        push=Step(f"push {image} through the Docker Engine API with the registry's credentials, then check "
                  f"that the registry shows the pushed digest"),
    )
