"""Container options for smoke tests. No GPU exists here, so GPU cells are checked by the
options handed to the Engine (the `--gpus all` DeviceRequest), not by running them."""

from __future__ import annotations

from builder.engines import vllm

from pathlib import Path

from builder.smoke.server import ServerSpec, run_options, server_args


def spec(gpu: bool) -> ServerSpec:
    return ServerSpec(image="reg/img:tag", engine=vllm, gpu=gpu, model_dir=Path("/models/tiny"), served_name="smoke",
                      args=("--max-model-len", "512"), env={"VLLM_CPU_KVCACHE_SPACE": "1"}, shm_size="1g",
                      ready_timeout=60)


def test_gpu_cell_gets_a_device_request_not_the_nvidia_runtime():
    options = run_options(spec(gpu=True))
    [request] = options["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert "runtime" not in options


def test_cpu_cell_runs_without_gpu():
    assert "device_requests" not in run_options(spec(gpu=False))


def test_port_on_loopback_only_model_read_only_and_shared_memory():
    options = run_options(spec(gpu=True))
    assert options["ports"] == {"8000/tcp": ("127.0.0.1", None)}
    assert options["volumes"] == {"/models/tiny": {"bind": "/model", "mode": "ro"}}
    assert options["shm_size"] == "1g"
    assert options["environment"] == {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def test_server_arguments_serve_the_mounted_model_under_the_smoke_name():
    assert server_args(spec(gpu=False)) == ["--model", "/model", "--served-model-name", "smoke", "--host", "0.0.0.0",
                                            "--port", "8000", "--max-model-len", "512"]
