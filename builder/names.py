"""One home for names: the image naming scheme, the immutable-tag pattern and the label keys.

A cell's friendly tag `<registry>/<repository>:<cell id>` only ever points at a tested image; a
build pushes `<cell id>-<content hash>`, whose hash part is HASH_LENGTH hex digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HASH_LENGTH = 16  # hex digits in tags: 64 bits is plenty to tell one cell's builds apart

LABEL_PREFIX = "org.llmfactory"
CELL_LABEL = f"{LABEL_PREFIX}.cell"
CONTENT_HASH_LABEL = f"{LABEL_PREFIX}.content-hash"
ENGINE_LABEL = f"{LABEL_PREFIX}.engine"
ENGINE_VERSION_LABEL = f"{LABEL_PREFIX}.engine-version"
PATCHES_LABEL = f"{LABEL_PREFIX}.patches"
SMOKE_LABEL = f"{LABEL_PREFIX}.smoke"  # on smoke-test containers, so leftovers can be found
DIGEST_ANNOTATION = f"{LABEL_PREFIX}.digest"
PASSED_ANNOTATION = f"{LABEL_PREFIX}.passed"
CREATED_LABEL = "org.opencontainers.image.created"

DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")


def label_patches(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """(id, sha256 prefix) of each patch an image carries, from its `org.llmfactory.patches` label
    (`id@sha256:abc,...`, or `none`: render/context.py writes it)."""
    text = labels.get(PATCHES_LABEL) or "none"
    pairs = (item.split("@sha256:", 1) for item in text.split(",") if "@sha256:" in item)
    return tuple((pid, sha) for pid, sha in pairs)


def short_hash(full_hash: str) -> str:
    return full_hash[:HASH_LENGTH]


def immutable_tag(cell_id: str, content_hash: str) -> str:
    return f"{cell_id}-{short_hash(content_hash)}"


def immutable_tag_pattern(cell_id: str) -> re.Pattern[str]:
    """Matches the immutable tags of one cell (and nothing else: not its friendly tag)."""
    return re.compile(rf"^{re.escape(cell_id)}-[0-9a-f]{{{HASH_LENGTH}}}$")


@dataclass(frozen=True)
class ImageNames:
    registry: str
    repository: str

    @property
    def repo(self) -> str:
        return f"{self.registry}/{self.repository}"

    def friendly(self, cell_id: str) -> str:
        return f"{self.repo}:{cell_id}"

    def immutable(self, cell_id: str, content_hash: str) -> str:
        return f"{self.repo}:{immutable_tag(cell_id, content_hash)}"

    def reference_in_repo(self, image: str) -> str | None:
        """The tag or digest of `image` when it names this repository (REPO:TAG or REPO@sha256:...), else None.

        >>> ImageNames("127.0.0.1:5000", "llm-factory/images").reference_in_repo("127.0.0.1:5000/llm-factory/images:vllm-x")
        'vllm-x'
        """
        match = re.fullmatch(rf"{re.escape(self.repo)}(?::(?P<tag>[\w][\w.-]{{0,127}})|@(?P<digest>sha256:[0-9a-f]{{64}}))",
                             image)
        return (match.group("tag") or match.group("digest")) if match else None
