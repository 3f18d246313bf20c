"""Image factory for patched LLM inference-engine images (vLLM first)."""

__version__ = "0.1.0"
