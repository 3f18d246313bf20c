"""The registry-facing commands: `builder smoke`, `builder promote`, `builder known-good`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .promotion_cli import known_good_app
from .session import MatrixOpt, RegistryOpt, Session


def register(app: typer.Typer) -> None:
    app.command("smoke")(smoke_command)
    app.command("promote")(promote_command)
    app.add_typer(known_good_app, name="known-good")


def smoke_command(
    image: Optional[str] = typer.Argument(None, help="An image in the registry: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."),
    cell: Optional[str] = typer.Option(None, "--cell", help="Smoke-test the newest image of this cell instead."),
    promote: bool = typer.Option(False, "--promote", help="Promote the image when every check passed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    baseline_tps: Optional[float] = typer.Option(None, "--baseline-tps", help="Decode tok/s to compare with (default: the cell's known-good record)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Allowed throughput regression (0.05 = 5%; default: the matrix's regression_threshold, 0.05 unless set)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Serve this local model directory instead of the matrix's."),
    report_dir: Path = typer.Option(Path("build/reports"), "--report-dir", help="Where <cell>.json and <cell>.txt go."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Boot an image with its tiny model and check it: models, completions, determinism under
    concurrency, golden outputs, tool calls, throughput against the last known-good, and (GPU
    cells) the kernel audit. The report is stored beside the image in the registry.

    Example: builder smoke --cell vllm-0.32.0-cpu --promote
    """
    from .smoke_cli import SmokeOptions, smoke_command as run
    run(Session(matrix, None, None, None, None, registry), image, cell,
        SmokeOptions(promote, as_json, baseline_tps, threshold, model_dir, report_dir))


def promote_command(
    target: str = typer.Argument(..., help="A cell id (its newest image with a passing smoke report) or sha256:<digest>."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Point the cell's friendly tag at a tested digest (manifest copy inside the registry: no
    rebuild, no layer moved) and record it as known-good. Untested digests are refused.

    Example: builder promote vllm-0.32.0-cpu
    """
    from .promotion_cli import promote_cmd
    promote_cmd(Session(matrix, None, None, None, None, registry), target)


@known_good_app.command("list")
def known_good_list(matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List every cell's known-good image. Example: builder known-good list"""
    from .promotion_cli import list_records
    list_records(Session(matrix, None, None, None, None, registry), as_json)


@known_good_app.command("show")
def known_good_show(cell_id: str = typer.Argument(..., help="The cell id."), matrix: Path = MatrixOpt,
                    registry: Optional[str] = RegistryOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show one cell's record: digest, patches, smoke summary, throughput history.
    Example: builder known-good show vllm-0.32.0-cpu"""
    from .promotion_cli import show_record
    show_record(Session(matrix, None, None, None, None, registry), cell_id, as_json)


@known_good_app.command("export")
def known_good_export(matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
                      out: Optional[Path] = typer.Option(None, "--out", help="Write the lock file here (default: stdout).")):
    """Write a lock file (cell -> image@sha256) to commit to deployment repos.
    Example: builder known-good export --out images.lock.yaml"""
    from .promotion_cli import export_lock
    export_lock(Session(matrix, None, None, None, None, registry), out)
