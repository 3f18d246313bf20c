"""`builder keys create` and `builder verify IMAGE --key PUB`: the signing key pair, and checking an image's attestations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from builder.attest import keys
from builder.attest.check import as_json, verify_image
from builder.attest.verify import ExpectedSource
from builder.cli.options import MatrixOpt, path_option
from builder.errors import InputError
from builder.jobs.workspace import Workspace
from builder.oci.reference import parse_reference
from builder.oci.registry import RegistryClient
from builder.render.context import source_record

keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="The key pair that signs every image's attestations.")


@keys_app.command("create")
def keys_create(
    out: Path = path_option(Path("builder-signing.key"), "--out",
                            help="The private key file (mode 0600); the public key goes beside it as .pub."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key pair."),
):
    """Make an ECDSA P-256 key pair: the private key (never printed) and the public key to hand to users.

    Example: builder keys create --out ~/.config/llm-factory/signing.key
    """
    pair = keys.create(out, force=force)
    typer.echo(f"private key: {pair.private} (mode 0600; keep it secret: BUILDER_SIGNING_KEY_FILE={pair.private})")
    typer.echo(f"public key:  {pair.public} (give it to users: builder verify IMAGE --key {pair.public.name})")
    typer.echo(f"key id:      {pair.keyid}")


def verify_command(
    image: str = typer.Argument(..., help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:... (a tag is resolved to its digest)."),
    key: Optional[Path] = path_option(None, "--key", help="The public key (env BUILDER_VERIFY_KEY)."),
    matrix: Path = MatrixOpt,
    as_json_: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
):
    """Check an image's signed attestations: every one verifies with the key and names this digest,
    a signed SBOM and provenance, a passing smoke verdict, the source the matrix pins. Exit codes:
    0 verified, 4 unsigned, 5 tampered, 6 smoke not passed, 7 signed by another key, 8 another source.

    Example: builder verify 127.0.0.1:5000/llm-factory/images:vllm-0.32.0-cpu --key builder-signing.pub
    """
    if key is None:
        env = os.environ.get(keys.PUBLIC_KEY_ENV)
        if not env:
            raise InputError(f"--key: give the public key file (or set {keys.PUBLIC_KEY_ENV})")
        key, where = Path(env), keys.PUBLIC_KEY_ENV
    else:
        where = "--key"
    public = keys.public_key(key, where)
    try:
        ref = parse_reference(image)
    except InputError as exc:
        raise InputError(f"IMAGE: {exc}") from None
    lookup = None
    if matrix.is_file():  # on another machine without the matrix, the source is shown, not compared
        workspace = Workspace(matrix, None)
        cells = {c.id: c for c in workspace.expansion.cells}

        def lookup(cell_id: str) -> ExpectedSource | None:
            cell = cells.get(cell_id)
            if cell is None:
                return None
            record = source_record(cell)
            return ExpectedSource(uri=record["ref"], sha256=record.get("sha256"))
    elif matrix != Path("matrix.yaml"):
        raise InputError(f"--matrix: {matrix} is not a file")
    client = RegistryClient.from_environment(ref.api_host)
    client.ping()
    result = verify_image(client, ref, public, lookup)
    if as_json_:
        typer.echo(as_json(result))
        return
    for line in result.lines():
        typer.echo(line)
    if lookup is None:
        typer.echo("source:     not compared with a matrix (no matrix.yaml here)", err=True)
