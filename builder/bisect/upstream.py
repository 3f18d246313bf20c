"""Tier 2: an image per engine commit, named by a template (`--images`).

    --images 'registry.example/vllm/vllm-openai:nightly-{sha}'

`{sha}` is the full commit, `{short}` its first 12 hex digits; nothing else may be in braces. The
template is checked once (pure: `check_template`); each candidate is then looked up with one
registry HEAD request, no pull (side effect: `UpstreamImages`). A found image is pulled and is the
step's image as it is, nothing built (images.py); the session offers the lookup only for cells whose
good image carries no patches of ours. A registry that cannot be asked is said once and finds
nothing, so the bisect goes on down the ladder.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from builder import grammar
from builder.errors import BuilderError, InputError
from builder.oci.reference import ImageRef, parse_reference

from .model import Candidate

_FIELD = re.compile(r"\{([^{}]*)\}")
_FIELDS = ("sha", "short")


def render_template(template: str, sha: str) -> str:
    return template.replace("{sha}", sha).replace("{short}", sha[:12])


def check_template(template: str, flag: str = "--images") -> str:
    """The template, or InputError (exit 2) saying what is wrong with it."""
    names = _FIELD.findall(template)
    unknown = [n for n in names if n not in _FIELDS]
    if unknown:
        raise InputError(f"{flag}: unknown field {{{unknown[0]}}} in '{template}' (use {{sha}} or {{short}})")
    sample = render_template(template, "0" * 40)
    if "{" in sample or "}" in sample:
        raise InputError(f"{flag}: unbalanced braces in '{template}'")
    if not names:
        raise InputError(f"{flag}: '{template}' names no commit: put {{sha}} or {{short}} in the tag, "
                         "e.g. REGISTRY/vllm/vllm-openai:nightly-{sha}")
    problem = grammar.image_reference(sample)
    if problem:
        raise InputError(f"{flag}: '{template}' does not make an image reference ({problem})")
    ref = parse_reference(sample)
    if ref.digest or not ref.tag or "0" * 12 not in ref.tag or "0" * 12 in ref.repository:
        raise InputError(f"{flag}: '{template}' must put the commit in the tag (REPO:TAG), not a digest")
    return template


class UpstreamImages:
    """The ladder's upstream lookup: Candidate -> image reference, or None when there is none."""

    def __init__(self, template: str, head: Callable[[ImageRef], bool], log: Callable[[str], None] = lambda m: None):
        self.template, self.head, self.log = template, head, log
        self.found: dict[str, str | None] = {}
        self._failed = False

    def reference(self, sha: str) -> str:
        return render_template(self.template, sha)

    def __call__(self, candidate: Candidate) -> str | None:
        if candidate.sha in self.found:
            return self.found[candidate.sha]
        text = self.reference(candidate.sha)
        result: str | None = None
        if not self._failed:
            try:
                result = text if self.head(parse_reference(text)) else None
            except BuilderError as exc:  # unreachable, refused credentials: say so once, then build instead
                self._failed = True
                self.log(f"upstream images: cannot ask for {text}: {str(exc).splitlines()[0]}; "
                         "every step is made by the factory instead")
        self.found[candidate.sha] = result
        return result


def registry_head(client_for: Callable[[str], object]) -> Callable[[ImageRef], bool]:
    """head(ref) over builder.oci.registry clients (client_for(host) -> RegistryClient)."""

    def head(ref: ImageRef) -> bool:
        client = client_for(ref.api_host)
        return client.head_manifest(ref.repository, ref.ref) is not None  # type: ignore[attr-defined]
    return head
