"""The cpu vLLM cell the integration tests build once per session (fixtures in conftest.py)."""

from pathlib import Path

CELL = "vllm-0.32.0-cpu"
BASE = "llm-factory/bookworm-python:3.11"
WHEELS = Path("/opt/wheels")  # torch==2.13.0+cpu lies here on the project's machines
REPOSITORY = "llm-factory/images"
