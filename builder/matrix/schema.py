"""Typed reading of YAML mappings: every wrong type or unknown key is a ConfigError at its line.

A typo in a key must never be silently ignored, so readers track which keys were consumed and
`finish()` rejects the rest, suggesting the closest known key.
"""

from __future__ import annotations

import difflib
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from builder.errors import ConfigError
from builder.matrix.yamlsrc import LineDict, LineList

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a mapping"}


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty"
    return "a string"


class MappingReader:
    """Reads one YAML mapping (`what` names it in errors, e.g. "archs.sm_90")."""

    def __init__(self, value: Any, source: str, line: int, what: str):
        if not isinstance(value, dict):
            raise ConfigError(source, line, f"{what} must be a mapping, got {type_name(value)}")
        self.data = value
        self.source = source
        self.what = what
        self.line = getattr(value, "line", line) or line
        self._seen: set[str] = set()

    def line_of(self, key: str) -> int:
        return self.data.line_of(key) if isinstance(self.data, LineDict) else self.line

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(self.source, self.line_of(key) if key else self.line, message)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None, required: bool = False) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if required:
                raise self.error(None, f"{self.what} is missing the required key '{key}'")
            return default
        return self.data[key]

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.raw(key, default, required)
        if value is None or value is default:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise self.error(key, f"{self.what}.{key} must be a string; quote it (\"{value}\") "
                                  "because YAML reads it as a number")
        if not isinstance(value, str):
            raise self.error(key, f"{self.what}.{key} must be a string, got {type_name(value)}")
        return value

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int | None:
        value = self.raw(key, default)
        if value is default:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(key, f"{self.what}.{key} must be an integer >= {minimum}, got {type_name(value)}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = (), required: bool = False) -> tuple[str, ...]:
        """A list of strings; a single string is accepted as a one-item list."""
        value = self.raw(key, None, required)
        if value is None:
            return default
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.error(key, f"{self.what}.{key} must be a list of strings, got {type_name(value)}")
        out = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                line = items.line_of(index) if isinstance(items, LineList) else self.line_of(key)
                hint = f"; quote it (\"{item}\")" if isinstance(item, (int, float)) else ""
                raise ConfigError(self.source, line,
                                  f"{self.what}.{key} items must be strings, got {type_name(item)}{hint}")
            out.append(item)
        return tuple(out)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, None)
        if value is None:
            return {}
        sub = MappingReader(value, self.source, self.line_of(key), f"{self.what}.{key}")
        return {str(k): sub.string(str(k), required=True) for k in list(value)}

    def specifier(self, key: str) -> SpecifierSet | None:
        text = self.string(key)
        if text is None:
            return None
        return parse_specifier(text, self.source, self.line_of(key), f"{self.what}.{key}")

    def sub(self, key: str, required: bool = False) -> "MappingReader | None":
        value = self.raw(key, None, required)
        if value is None:
            return None
        return MappingReader(value, self.source, self.line_of(key), f"{self.what}.{key}")

    def finish(self) -> None:
        """Reject keys nobody read: they are typos or unsupported settings."""
        for key in self.data:
            if key not in self._seen:
                known = sorted(self._seen)
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
                raise self.error(key, f"unknown key '{key}' in {self.what}{hint}")


def parse_specifier(text: str, source: str, line: int, what: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ConfigError(source, line, f"{what}: '{text}' is not a valid version specifier "
                                        "(write e.g. \">=0.19,<0.21\")") from None


def parse_version(text: str, source: str, line: int, what: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise ConfigError(source, line, f"{what}: '{text}' is not a PEP 440 version (e.g. 0.20.2 or 0.34.0.dev0)") from None
