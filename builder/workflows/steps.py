"""The steps the generated jobs share: check out, install, registry env, keep artifacts (pure).

Each function returns a workflow step (a dict for yamlout.emit). Third-party actions are pinned by
full commit SHA; `offline` is the --offline-actions form, which uses no marketplace action (plain
git, artifacts copied to a directory).
"""

from __future__ import annotations

from builder.yamlout import Commented

CREDENTIALS = ("BUILDER_REGISTRY_USER", "BUILDER_REGISTRY_PASSWORD")
# Third-party actions pinned by full commit SHA (zizmor: unpinned-uses). Gitea's artifact server
# refuses upload-artifact v4 (GHESNotSupportedError, go-gitea/gitea#31256): v3 there.
CHECKOUT = ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2")
UPLOAD = {"github": ("actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
          "gitea": ("actions/upload-artifact@a8a3f3ad30e3422c9c7b888a15615d19a852ae32", "v3.1.3")}
VENV = "$RUNNER_TEMP/llm-factory"  # the factory's virtualenv on the runner, outside the checkout

UNSET_EMPTY = ("# A secret or variable that is not configured arrives empty: unset it, so the factory\n"
               "# falls back to the matrix's registry and the runner's docker login.\n"
               + "".join(f'[ -n "${{{v}:-}}" ] || unset {v}\n' for v in ("BUILDER_REGISTRY", *CREDENTIALS)))


def registry_env() -> dict:
    return {"BUILDER_REGISTRY": "${{ vars.BUILDER_REGISTRY }}",
            **{name: f"${{{{ secrets.{name} }}}}" for name in CREDENTIALS}}


def install(cond: str | None) -> dict:
    return {"name": "Install the factory", **({"if": cond} if cond else {}), "run": (
        f'python3 -m venv "{VENV}"\n'
        f'"{VENV}/bin/python" -m pip install --quiet --disable-pip-version-check -e .\n')}


def checkout(offline: bool, cond: str | None) -> dict:
    when = {"if": cond} if cond else {}
    if not offline:
        return {"name": "Check out", **when, "uses": Commented(*CHECKOUT), "with": {"persist-credentials": False}}
    return {"name": "Check out (plain git, no marketplace action)", **when,
            "env": {"GIT_URL": "${{ vars.FACTORY_GIT_URL }}", "SERVER": "${{ github.server_url }}",
                    "REPOSITORY": "${{ github.repository }}", "SHA": "${{ github.sha }}"},
            "run": ('url="${GIT_URL:-$SERVER/$REPOSITORY.git}"\n'
                    '[ -d .git ] || git init --quiet .\n'
                    'git fetch --quiet --no-tags "$url" "+refs/heads/*:refs/remotes/factory/*"\n'
                    'git checkout --quiet --force --detach "$SHA"\n'
                    'git clean -ffdxq\n'
                    'git --no-pager log -1 --format="checked out %H %s"\n')}


def upload(provider: str, offline: bool, cond: str, files: list[str]) -> dict:
    """A build job's log and reports: uploaded as an artifact, or (offline) copied to a directory."""
    if not offline:
        return {"name": "Upload build log and smoke report", "if": cond, "uses": Commented(*UPLOAD[provider]),
                "with": {"name": "${{ matrix.cell }}",
                         "path": "".join(f.format("${{ matrix.cell }}") + "\n" for f in files),
                         "if-no-files-found": "warn"}}
    return {"name": "Keep build log and smoke report (copy to a directory)", "if": cond,
            "env": {"ARTIFACT_DIR": "${{ vars.FACTORY_ARTIFACT_DIR }}", "RUN_ID": "${{ github.run_id }}"},
            "run": ('dest="${ARTIFACT_DIR:-$HOME/llm-factory-artifacts}/$RUN_ID/$CELL"\n'
                    'mkdir -p "$dest"\n'
                    f'for f in {" ".join(f.format("$CELL") for f in files)}; do\n'
                    '  if [ -f "$f" ]; then cp "$f" "$dest/"; fi\n'
                    'done\n'
                    'echo "artifacts: $dest"\n')}
