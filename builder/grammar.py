"""What each place a value lands in accepts: one checker per kind of string.

Every string read from matrix.yaml, a patch record, an argument or an environment variable that
will reach a Dockerfile, a shell word, an image name or a path is checked here at load time, so a
value that could add a Dockerfile instruction, break out of a quoted shell word or name a wrong
image never gets further than its file:line. Each checker returns None when the value is fine,
else what is wrong with it (the caller adds where the value came from).

Grammars: image references, registries and repositories follow the OCI distribution reference
grammar (distribution/reference); tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; versions PEP 440
(packaging) in a shell-safe spelling; distribution names PEP 508; environment names POSIX.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from packaging.version import InvalidVersion, Version

# -- OCI distribution reference grammar --------------------------------------------------------
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_PORT = r"[0-9]+"
_REGISTRY = re.compile(rf"{_HOST}(?::({_PORT}))?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_HOST}(?::{_PORT})?)/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
TAG = re.compile(_TAG)
NAME_MAX = 255  # an image name (registry/repository) holds at most 255 characters
TAG_MAX = 128

# -- everything else ---------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_VERSION_CHARS = re.compile(r"[A-Za-z0-9.+!_-]+")
_DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENGINE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?")
VERSION_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ARCH_NAME = re.compile(r"sm_\d+[af]?|cpu")
ARCH_LIST = re.compile(r"\d+\.\d+[af]?(?:\+PTX)?(?:[; ]\d+\.\d+[af]?(?:\+PTX)?)*")
COMPUTE_CAPABILITY = re.compile(r"\d+\.\d+")
SECRET_ID = re.compile(r"[A-Za-z0-9_.-]+")
_URL = re.compile(r"(?:https?|ssh|git|file)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")


def _show(value: str, limit: int = 60) -> str:
    """The value for an error message: repr-quoted, control characters visible, long ones cut."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)


def one_line(value: str) -> str | None:
    """Free text (descriptions, reasons): one line, no control characters."""
    match = _CONTROL.search(value)
    if match:
        return f"{_show(value)} contains a control character ({match.group()!r}); write it on one line"
    return None


def nonempty_line(value: str) -> str | None:
    if not value.strip():
        return "is empty"
    return one_line(value)


def registry(value: str) -> str | None:
    """host[:port]: what comes before the first '/' of an image name (no scheme, no path).

    >>> registry("127.0.0.1:5000") is None
    True
    >>> print(registry("https://ghcr.io"))
    'https://ghcr.io' has a URL scheme; give host[:port] only (e.g. 127.0.0.1:5000)
    >>> print(registry("localhost:70000"))
    'localhost:70000': port 70000 is out of range
    """
    if "://" in value:
        return f"{_show(value)} has a URL scheme; give host[:port] only (e.g. 127.0.0.1:5000)"
    match = _REGISTRY.fullmatch(value)
    if not match:
        return f"{_show(value)} is not a registry host[:port] (e.g. 127.0.0.1:5000 or ghcr.io)"
    if match.group(1) is not None and not 0 < int(match.group(1)) < 65536:
        return f"{_show(value)}: port {match.group(1)} is out of range"
    return None


def repository(value: str) -> str | None:
    """A repository path: lower-case components joined by '/'."""
    if not _REPOSITORY.fullmatch(value):
        return (f"{_show(value)} is not a repository name (lower-case letters, digits and '.', '_', '-' "
                "separators, components joined by '/', e.g. llm-factory/images)")
    return None


def image_name(registry_host: str, repo: str) -> str | None:
    name = f"{registry_host}/{repo}-records"  # the longest name the factory derives
    if len(name) > NAME_MAX:
        return f"the image name {_show(name)} is {len(name)} characters; at most {NAME_MAX} are allowed"
    return None


def mirror(value: str) -> str | None:
    """REGISTRY/REPOSITORY (where `builder bases mirror` copies the bases)."""
    host, _, repo = value.rstrip("/").partition("/")
    if not repo:
        return f"{_show(value)} must be REGISTRY/REPOSITORY, e.g. 127.0.0.1:5000/llm-factory/bases"
    return registry(host) or repository(repo) or image_name(host, repo)


def image_reference(value: str) -> str | None:
    """[registry/]repository[:tag][@digest], as FROM accepts it."""
    match = _REFERENCE.fullmatch(value)
    if not match:
        return (f"{_show(value)} is not an image reference ([registry/]repository[:tag][@sha256:...], "
                "e.g. nvidia/cuda:13.0.2-devel-ubuntu24.04)")
    name = (match.group("domain") + "/" if match.group("domain") else "") + match.group("path")
    if len(name) > NAME_MAX:
        return f"{_show(value)}: the image name is longer than {NAME_MAX} characters"
    return None


def tag(value: str, limit: int = TAG_MAX) -> str | None:
    if not TAG.fullmatch(value):
        return f"{_show(value)} is not a valid image tag (letters, digits, '_', '.', '-'; not starting with '.' or '-')"
    if len(value) > limit:
        return f"{_show(value)} is {len(value)} characters; at most {limit} are allowed here"
    return None


def version(value: str) -> str | None:
    """A PEP 440 version in a spelling that is one shell word (no spaces, quotes or '$')."""
    if not _VERSION_CHARS.fullmatch(value):
        return f"{_show(value)} is not a PEP 440 version (e.g. 0.20.2 or 0.34.0.dev0)"
    try:
        Version(value)
    except InvalidVersion:
        return f"{_show(value)} is not a PEP 440 version (e.g. 0.20.2 or 0.34.0.dev0)"
    return None


def distribution(value: str) -> str | None:
    """A PyPI distribution name (PEP 508)."""
    if not _DIST_NAME.fullmatch(value):
        return f"{_show(value)} is not a PyPI distribution name (letters, digits, '.', '_', '-')"
    return None


def env_name(value: str) -> str | None:
    if not ENV_NAME.fullmatch(value):
        return f"{_show(value)} is not an environment variable name (letters, digits and '_', not starting with a digit)"
    return None


def url(value: str) -> str | None:
    if not _URL.fullmatch(value) or _CONTROL.search(value):
        return f"{_show(value)} is not a URL (https://..., ssh://..., git@host:path), or holds spaces"
    return None


def relative_path(value: str) -> str | None:
    """A path inside a directory: relative, no '..', no empty or control characters.

    >>> relative_path("fix.diff") is None
    True
    >>> print(relative_path("../../etc/passwd"))
    '../../etc/passwd' must not climb out with '..'
    >>> print(relative_path("/etc/passwd"))
    '/etc/passwd' must be a relative path inside the record's directory (not absolute)
    """
    if not value or not value.strip():
        return "is empty"
    problem = one_line(value)
    if problem:
        return problem
    if value.startswith(("/", "~")) or "\\" in value:
        return f"{_show(value)} must be a relative path inside the record's directory (not absolute)"
    parts = PurePosixPath(value).parts
    if ".." in value.split("/") or ".." in parts:
        return f"{_show(value)} must not climb out with '..'"
    if value.strip("/") in ("", "."):
        return f"{_show(value)} names a directory, not a file"
    return None
