"""The tiny model a smoke test serves: from the Hub (pinned revision, cached), a local directory,
or generated offline inside the image under test (side effects: HTTP, docker, disk)."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.types import DeviceRequest

from builder.errors import InputError, StepFailed
from builder.matrix.smoke_settings import SmokeSettings
from builder.names import SMOKE_LABEL
from builder.oci.container import Container
from builder.patching.sources import default_cache_dir

TINYMODEL_SCRIPT = Path(__file__).resolve().parent / "tinymodel.py"


@dataclass(frozen=True)
class SmokeModel:
    directory: Path  # mounted read-only into the container
    model_id: str  # what golden outputs are keyed by: id@revision or generated:name@script-sha


def resolve_model(settings: SmokeSettings, image: str, client: docker.DockerClient,
                  cache: Path | None = None, override: Path | None = None, gpu: bool = False) -> SmokeModel:
    cache = Path(cache or default_cache_dir())
    if override is not None:
        if not (override / "config.json").is_file():
            raise InputError(f"--model-dir: '{override}' has no config.json (a Hugging Face model directory)")
        return SmokeModel(override.resolve(), f"path:{override.resolve()}")
    model = settings.model
    if not model:
        raise InputError("matrix.yaml sets no smoke model for this engine/arch (engines.<engine>.smoke.model)")
    if model.startswith("path:"):
        directory = Path(model[5:]).expanduser()
        if not (directory / "config.json").is_file():
            raise InputError(f"smoke model '{model}': no config.json in {directory}")
        return SmokeModel(directory.resolve(), model)
    if model.startswith("generated:"):
        return _generated(model, image, client, cache, gpu)
    return _from_hub(model, settings.revision, cache)


def _from_hub(repo_id: str, revision: str | None, cache: Path) -> SmokeModel:
    from huggingface_hub import snapshot_download
    try:
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache / "hf")))
    except Exception as exc:  # the hub library raises many types; all mean "not available"
        offline = " (HF_HUB_OFFLINE is set and the cache lacks it)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise StepFailed(f"cannot fetch smoke model {repo_id}@{revision or 'main'}{offline}: "
                         f"{exc.__class__.__name__}; fill the cache or set the model to path:DIR") from None
    return SmokeModel(path, f"{repo_id}@{path.name}")  # snapshot directories are named by commit


def generated_shapes() -> tuple[str, ...]:
    import importlib.util
    spec = importlib.util.spec_from_file_location("llm_factory_tinymodel", TINYMODEL_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # stdlib only at import time
    return tuple(module.SHAPES)


def _generated(model: str, image: str, client: docker.DockerClient, cache: Path, gpu: bool = False) -> SmokeModel:
    name = model.split(":", 1)[1]
    if name not in generated_shapes():
        known = ", ".join(f"generated:{n}" for n in generated_shapes())
        raise InputError(f"unknown generated smoke model '{model}' (known: {known})")
    script = TINYMODEL_SCRIPT.read_bytes()
    digest = hashlib.sha256(script).hexdigest()[:12]
    target = cache / "models" / f"{name}-{digest}"
    if (target / ".complete").is_file():
        return SmokeModel(target, f"{model}@{digest}")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        # The image under test has torch, transformers and tokenizers; the host needs none.
        # Realistic shapes are made on the GPU in bf16 (7 B: about 30 s there, against minutes on a host).
        device = ["--device", "cuda"] if gpu and name != "tiny-llama" else []
        extra = {"device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])]} if device else {}
        with Container(client, "tinymodel", image=image, environment={"HF_HUB_OFFLINE": "1"}, **extra,
                       entrypoint=["python3", "/llm-factory/tinymodel.py", "/out", "--shape", name, *device],
                       labels={SMOKE_LABEL: "1"},
                       volumes={str(partial): {"bind": "/out", "mode": "rw"},
                                str(TINYMODEL_SCRIPT): {"bind": "/llm-factory/tinymodel.py", "mode": "ro"}}) as box:
            code = box.wait(timeout=600)
            if code != 0:
                last = box.logs(lines=5).replace("\n", " | ")
                raise StepFailed(f"generating {model} inside {image} failed (exit {code}): {last}")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise StepFailed(f"generating {model} inside {image} failed: {exc.__class__.__name__}: {exc}") from None
    (partial / ".complete").write_text(digest)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return SmokeModel(target, f"{model}@{digest}")
