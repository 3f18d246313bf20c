"""The tiny model a smoke test serves: from the Hub (pinned revision, cached), a local directory,
or generated offline inside the image under test (side effects: HTTP, docker, disk)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.types import DeviceRequest

from builder.engines import EngineModule, model_dir_problem
from builder.errors import InputError, StepFailed
from builder.matrix.smoke_settings import SmokeSettings
from builder.names import SMOKE_LABEL
from builder.oci import dockerd
from builder.oci.container import Container
from builder.patching.sources import default_cache_dir

TINYMODEL_SCRIPT = Path(__file__).resolve().parent / "tinymodel.py"
TINY_GGUF_SCRIPT = Path(__file__).resolve().parent / "tiny_gguf.py"
GGUF_FILE = "tiny-f32.gguf"
GENERATED_GGUF = "generated:tiny-llama-gguf"


@dataclass(frozen=True)
class SmokeModel:
    directory: Path  # mounted read-only into the container
    model_id: str  # what golden outputs are keyed by: id@revision or generated:name@script-sha
    file: str | None = None  # a GGUF model: the file in `directory` the server loads


def model_needs_helper(settings: SmokeSettings, override: Path | None) -> bool:
    """Whether the smoke model is made inside the model-helper image (the generated GGUF, no --model-dir)."""
    return override is None and settings.model == GENERATED_GGUF


def resolve_model(settings: SmokeSettings, image: str, client: docker.DockerClient, *, engine: EngineModule,
                  cache: Path | None = None, override: Path | None = None, gpu: bool = False,
                  helper_image: str | None = None, pull_auth: dict | None = None) -> SmokeModel:
    cache = Path(cache or default_cache_dir())
    if override is not None:
        problem = model_dir_problem(engine, override)
        if problem:
            raise InputError(f"--model-dir: {problem}")
        ggufs = sorted(override.glob("*.gguf"))
        if not (override / "config.json").is_file() and len(ggufs) == 1:  # a GGUF model: one file
            return SmokeModel(override.resolve(), f"path:{ggufs[0].resolve()}", ggufs[0].name)
        return SmokeModel(override.resolve(), f"path:{override.resolve()}")
    model = settings.model
    if not model:
        raise InputError("matrix.yaml sets no smoke model for this engine/arch (engines.<engine>.smoke.model)")
    if model.startswith("path:"):
        directory = Path(model[5:]).expanduser()
        if not (directory / "config.json").is_file():
            raise InputError(f"smoke model '{model}': no config.json in {directory}")
        return SmokeModel(directory.resolve(), model)
    if model == GENERATED_GGUF:
        if engine.converter_dir is None:
            raise InputError(f"smoke model '{model}': the {engine.name} engine keeps no GGUF converter in its images; "
                             "give it a Hugging Face model (engines.<engine>.smoke.model)")
        if not helper_image:
            raise InputError(f"smoke model '{model}' needs a helper image with torch (smoke.model_helper: a cell id)")
        return _generated_gguf(model, image, engine.converter_dir, helper_image, client, cache, pull_auth)
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
    if spec is None or spec.loader is None:
        raise StepFailed(f"{TINYMODEL_SCRIPT}: not a loadable Python file; reinstall the package")
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
    partial = _fresh_partial(target)
    # The image under test has torch, transformers and tokenizers; the host needs none.
    # Realistic shapes are made on the GPU in bf16 (7 B: about 30 s there, against minutes on a host).
    device = ["--device", "cuda"] if gpu and name != "tiny-llama" else []
    extra = {"device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])]} if device else {}
    _run_maker(client, f"generating {model} inside {image}", "tinymodel", image=image,
               environment={"HF_HUB_OFFLINE": "1"}, **extra,
               entrypoint=["python3", "/llm-factory/tinymodel.py", "/out", "--shape", name, *device],
               volumes={str(partial): {"bind": "/out", "mode": "rw"},
                        str(TINYMODEL_SCRIPT): {"bind": "/llm-factory/tinymodel.py", "mode": "ro"}})
    return SmokeModel(_publish(partial, target, digest), f"{model}@{digest}")


def _fresh_partial(target: Path) -> Path:
    """An empty <target>.partial: a model is made there and renamed into place only when complete."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def _publish(partial: Path, target: Path, stamp: str) -> Path:
    (partial / ".complete").write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _run_maker(client: docker.DockerClient, what: str, name: str, **options) -> None:
    """Run a model-making container to its end (removed on every way out); StepFailed with the last
    log lines when it fails."""
    try:
        with Container(client, name, labels={SMOKE_LABEL: "1"}, **options) as box:
            code = box.wait(timeout=600)
            if code != 0:
                last = box.logs(lines=5).replace("\n", " | ")
                raise StepFailed(f"{what} failed (exit {code}): {last}")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise StepFailed(f"{what} failed: {exc.__class__.__name__}: {exc}") from None


def _generated_gguf(model: str, image: str, converter_dir: str, helper: str, client: docker.DockerClient, cache: Path,
                    pull_auth: dict | None = None) -> SmokeModel:
    """The tiny Llama as one GGUF file, made offline: tinymodel.py makes the HF model and tiny_gguf.py
    converts it with the converter of the llama.cpp tree in the image under test (copied out of it,
    never run there), both inside `helper` (an image with torch and transformers: the vllm-cpu cell's).
    Cached by the two scripts and the converter's files: same inputs, same file."""
    with tempfile.TemporaryDirectory(prefix="llm-factory-convert-") as tmp:
        convert = Path(tmp) / "convert"
        _copy_out(client, image, converter_dir, convert)
        digest = hashlib.sha256(TINYMODEL_SCRIPT.read_bytes() + TINY_GGUF_SCRIPT.read_bytes())
        for path in sorted(p for p in convert.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{path.relative_to(convert)}\0".encode() + path.read_bytes())
        short = digest.hexdigest()[:12]
        target = cache / "models" / f"tiny-llama-gguf-{short}"
        if (target / ".complete").is_file():
            return SmokeModel(target, f"{model}@{short}", GGUF_FILE)
        dockerd.ensure_image(client, helper, pull_auth)  # only now: a cached model needs no helper
        partial = _fresh_partial(target)
        script = (f"set -euo pipefail; python3 /llm-factory/tinymodel.py /out/hf; "
                  f"python3 /llm-factory/tiny_gguf.py /llm-factory/convert /out/hf /out/{GGUF_FILE} --outtype f32; "
                  f"chmod 644 /out/{GGUF_FILE}")
        _run_maker(client, f"making {model} inside {helper}", "tinygguf", image=helper, network_mode="none",
                   environment={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                   entrypoint=["/bin/bash", "-c", script],
                   volumes={str(partial): {"bind": "/out", "mode": "rw"},
                            str(convert): {"bind": "/llm-factory/convert", "mode": "ro"},
                            str(TINYMODEL_SCRIPT): {"bind": "/llm-factory/tinymodel.py", "mode": "ro"},
                            str(TINY_GGUF_SCRIPT): {"bind": "/llm-factory/tiny_gguf.py", "mode": "ro"}})
    if not (partial / GGUF_FILE).is_file():
        raise StepFailed(f"making {model} inside {helper}: no {GGUF_FILE} came out")
    return SmokeModel(_publish(partial, target, short), f"{model}@{short}", GGUF_FILE)


def _copy_out(client: docker.DockerClient, image: str, path: str, target: Path) -> None:
    """Copy a directory out of an image; the container is created and exits at once (`true`), its
    entrypoint never runs."""
    try:
        with Container(client, "copyout", image=image, entrypoint=["true"], network_mode="none",
                       labels={SMOKE_LABEL: "1"}) as box:
            box.wait(timeout=120)
            stream, _ = box.handle.get_archive(path)
            with tempfile.TemporaryFile() as spool:
                for chunk in stream:
                    spool.write(chunk)
                spool.seek(0)
                with tarfile.open(fileobj=spool) as tar:
                    tar.extractall(target.parent, filter="data")
    except docker.errors.NotFound:
        raise StepFailed(f"{image} has no {path} (the llama.cpp template copies the converter there)") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise StepFailed(f"cannot copy {path} out of {image}: {exc.__class__.__name__}: {exc}") from None
    extracted = target.parent / Path(path).name
    if extracted != target:
        extracted.rename(target)
