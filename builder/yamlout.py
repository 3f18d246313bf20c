"""The one YAML writer: block style in insertion order, scalars quoted only where YAML needs it.

Used for the generated CI workflows, the known-good lock file and the board's recipes; all must read back as the same
values (a tag like `1.10` or a word like `on` is quoted, so YAML never turns it into a number or bool).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Commented:
    """A scalar written with a trailing YAML comment (the release a pinned SHA stands for)."""
    value: str
    comment: str


_PLAIN = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./@*(), -]*[A-Za-z0-9_./*)]|[A-Za-z_]")
_FLOW = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./*-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
# An image pinned by digest (`host:port/repo@sha256:...`) is never a number or a word: plain too.
_PINNED_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:+-]*@sha256:[0-9a-f]{64}")


def scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    text = str(value)
    if (_PLAIN.fullmatch(text) and text.lower() not in _RESERVED) or _PINNED_IMAGE.fullmatch(text):
        return text
    return json.dumps(text)  # a double-quoted YAML scalar


def _float(value: float) -> str:
    """A float that YAML 1.1 (PyYAML) and 1.2 both read back as that float: 198.3, 1.0e-05, .inf."""
    if math.isnan(value):
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def emit(value: object, indent: int) -> list[str]:
    """Block-style YAML, in insertion order; short lists of plain strings in flow style."""
    pad, lines = " " * indent, []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{key}:"
            if isinstance(item, Commented):
                lines.append(f"{head} {scalar(item.value)} # {item.comment}")
            elif isinstance(item, str) and "\n" in item:
                lines.append(f"{head} |")
                lines += [f"{pad}  {line}" if line else "" for line in item.rstrip("\n").split("\n")]
            elif isinstance(item, list) and item and all(isinstance(i, str) and _FLOW.fullmatch(i) for i in item):
                lines.append(f"{head} [{', '.join(scalar(i) for i in item)}]")
            elif isinstance(item, (dict, list)) and not item:
                lines.append(f"{head} {'{}' if isinstance(item, dict) else '[]'}")
            elif isinstance(item, (dict, list)):
                lines.append(head)
                lines += emit(item, indent + 2)
            else:
                lines.append(f"{head} {scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                inner = emit(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {scalar(item)}")
    return lines
