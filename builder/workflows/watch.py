"""The scheduled watch workflow (pure): one job per arch on that arch's self-hosted runners, running
`builder watch --build` on the arch's selected cells and keeping its verdicts and reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from builder.matrix.cells import Cell
from builder.workflows.steps import UNSET_EMPTY, UPLOAD, VENV, checkout, install, registry_env
from builder.yamlout import Commented, emit

WATCH_SCHEDULE = "41 5 * * *"  # daily, after the nightly build run (17 4 * * *) has had its hour
WATCH_TIMEOUT = 240  # minutes: a release's smoke run and gate, and a bisect when it regressed
OUT = "build/watch"  # proposals and verdicts.jsonl
WORK = "build/watch-work"  # --workdir: build contexts (a release's wheel, hundreds of MB), logs, smoke reports
KEPT = (OUT, f"{WORK}/logs", f"{WORK}/reports")  # what a run keeps: never the contexts


def watch_path(workflow_dir: str, name: str) -> str:
    return f"{workflow_dir}/{name}-watch.yml"


def watch_workflow(groups: Sequence[list[Cell]], provider: str, offline: bool, header: list[str], *, name: str,
                   environment: str) -> str:
    jobs: dict[str, Any] = {}
    for cells in groups:
        arch = cells[0].arch
        cell_args = " ".join(f"--cell {c.id}" for c in cells)
        keep: dict[str, Any]
        if offline:
            keep = {"name": "Keep the verdicts (copy to a directory)", "if": "${{ always() }}",
                    "env": {"ARTIFACT_DIR": "${{ vars.FACTORY_ARTIFACT_DIR }}", "RUN_ID": "${{ github.run_id }}"},
                    "run": (f'dest="${{ARTIFACT_DIR:-$HOME/llm-factory-artifacts}}/$RUN_ID/watch-{arch.name}"\n'
                            f'for d in {" ".join(KEPT)}; do\n'
                            '  if [ -d "$d" ]; then mkdir -p "$dest/$d" && cp -R "$d/." "$dest/$d/"; fi\n'
                            'done\n')}
        else:
            keep = {"name": "Upload the verdicts", "if": "${{ always() }}", "uses": Commented(*UPLOAD[provider]),
                    "with": {"name": f"watch-{arch.name}", "path": "".join(f"{d}/\n" for d in KEPT),
                             "if-no-files-found": "warn"}}
        jobs[f"watch-{arch.name}"] = {
            "name": f"watch {arch.name}",
            "runs-on": list(arch.runs_on),
            **({"environment": environment} if provider == "github" and environment else {}),
            "timeout-minutes": WATCH_TIMEOUT,
            "concurrency": {"group": f"{name}-watch-{arch.name}", "cancel-in-progress": False},
            "steps": [checkout(offline, None), install(None),
                      {"name": "Watch upstream: new releases tested against the known-good",
                       "env": registry_env(),
                       "run": UNSET_EMPTY + f'mkdir -p {OUT}\n'
                              f'"{VENV}/bin/builder" watch {cell_args} --build --propose-dir {OUT} '
                              f'--workdir {WORK} --notify {OUT}/verdicts.jsonl\n'},
                      keep]}
    workflow = {"name": f"{name}-watch",
                "on": {"schedule": [{"cron": WATCH_SCHEDULE}], "workflow_dispatch": {}},
                "permissions": {"contents": "read"},
                "jobs": jobs}
    return "\n".join(header + emit(workflow, 0)) + "\n"
