"""Typed reading of YAML mappings: every wrong type or unknown key is a ConfigError at its line.

A typo in a key must never be silently ignored, so readers track which keys were consumed and
`finish()` rejects the rest, suggesting the closest known key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Literal, overload

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from builder import grammar
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

    def value(self, key: str, default: Any = None, required: bool = False) -> Any:
        """raw(), except that a key given with an empty value (`key:`) is an error: an empty value
        is a mistake or a half-deleted setting, never a way to say "the default"."""
        value = self.raw(key, default, required)
        if value is None and key in self.data:
            raise self.error(key, f"{self.what}.{key} is empty; give a value or remove the key")
        return value

    # A default or required=True means a string comes back: the overloads tell the type checker so.
    @overload
    def string(self, key: str, default: str, required: bool = False,
               check: Callable[[str], str | None] | None = None, multiline: bool = False) -> str: ...

    @overload
    def string(self, key: str, default: None = None, *, required: Literal[True],
               check: Callable[[str], str | None] | None = None, multiline: bool = False) -> str: ...

    @overload
    def string(self, key: str, default: str | None = None, required: bool = False,
               check: Callable[[str], str | None] | None = None, multiline: bool = False) -> str | None: ...

    def string(self, key: str, default: str | None = None, required: bool = False,
               check: Callable[[str], str | None] | None = None, multiline: bool = False) -> str | None:
        """A non-empty string of one line (multiline: any text); check: a grammar from
        builder.grammar, whose complaint is reported at the key's line."""
        value = self.value(key, default, required)
        if value is None or (value is default and key not in self.data):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise self.error(key, f"{self.what}.{key} must be a string; quote it (\"{value}\") "
                                  "because YAML reads it as a number")
        if not isinstance(value, str):
            raise self.error(key, f"{self.what}.{key} must be a string, got {type_name(value)}")
        problem = (None if value.strip() else "is empty") if multiline else grammar.nonempty_line(value)
        if problem is None and check is not None:
            problem = check(value)
        if problem:
            raise self.error(key, f"{self.what}.{key}: {problem}")
        return value

    @overload
    def integer(self, key: str, default: int, minimum: int = 0) -> int: ...

    @overload
    def integer(self, key: str, default: None = None, minimum: int = 0) -> int | None: ...

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int | None:
        value = self.value(key, default)
        if value is default and key not in self.data:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(key, f"{self.what}.{key} must be an integer >= {minimum}, got {type_name(value)}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = (), required: bool = False,
                check: Callable[[str], str | None] | None = None, nonempty: bool = False) -> tuple[str, ...]:
        """A list of strings; a single string is accepted as a one-item list."""
        value = self.value(key, None, required)
        if value is None:
            return default
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.error(key, f"{self.what}.{key} must be a list of strings, got {type_name(value)}")
        if nonempty and not items:
            raise self.error(key, f"{self.what}.{key} is an empty list")
        out = []
        for index, item in enumerate(items):
            line = items.line_of(index) if isinstance(items, LineList) else self.line_of(key)
            if not isinstance(item, str):
                hint = f"; quote it (\"{item}\")" if isinstance(item, (int, float)) and not isinstance(item, bool) else ""
                raise ConfigError(self.source, line,
                                  f"{self.what}.{key} items must be strings, got {type_name(item)}{hint}")
            problem = grammar.nonempty_line(item) or (check(item) if check else None)
            if problem:
                raise ConfigError(self.source, line, f"{self.what}.{key}[{index}]: {problem}")
            out.append(item)
        return tuple(out)

    def string_map(self, key: str, check_key: Callable[[str], str | None] | None = None,
                   check: Callable[[str], str | None] | None = None) -> dict[str, str]:
        """A mapping of strings to strings; every key and value is checked at its own line."""
        value = self.value(key, None)
        if value is None:
            return {}
        sub = MappingReader(value, self.source, self.line_of(key), f"{self.what}.{key}")
        out = {}
        for name in list(value):
            if not isinstance(name, str):
                hint = f" (quote it: YAML reads this key as {type_name(name)})" if name is not None else ""
                raise sub.error(name, f"{sub.what}: key {name!r} must be a quoted string{hint}")
            problem = grammar.nonempty_line(name) or (check_key(name) if check_key else None)
            if problem:
                raise sub.error(name, f"{sub.what}: key {problem}")
            out[name] = sub.string(name, required=True, check=check)
        return out

    def specifier(self, key: str) -> SpecifierSet | None:
        text = self.string(key)
        if text is None:
            return None
        return parse_specifier(text, self.source, self.line_of(key), f"{self.what}.{key}")

    @overload
    def sub(self, key: str, required: Literal[True]) -> MappingReader: ...

    @overload
    def sub(self, key: str, required: bool = False) -> MappingReader | None: ...

    def sub(self, key: str, required: bool = False) -> MappingReader | None:
        value = self.value(key, None, required)
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
    problem = grammar.version(text)
    if problem:
        raise ConfigError(source, line, f"{what}: {problem}")
    return Version(text)
