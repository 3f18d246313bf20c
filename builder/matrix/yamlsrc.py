"""YAML loading that remembers line numbers, so every error can name `file:line`.

PyYAML drops positions and silently keeps the last of duplicate keys; both are wrong for a
configuration file people edit by hand, so mappings and sequences are built as subclasses
that carry the line of each key and item, and duplicate keys are an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from builder.errors import ConfigError
from builder.util import MAX_FILE_BYTES, read_bounded


class LineDict(dict[Any, Any]):
    """A mapping from YAML with the line of the mapping and of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: str) -> int:
        return int(self.key_lines.get(key, self.line))


class LineList(list[Any]):
    """A sequence from YAML with the line of the sequence and of each item."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


# libyaml's parser where PyYAML was built with it (about 10x faster; marks keep line numbers).
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a class, chosen at run time

MAX_BYTES = MAX_FILE_BYTES  # a matrix or a patch record larger than this is refused, not parsed
MAX_DEPTH = 64  # nested mappings/sequences; deeper input is refused before it is composed
MAX_ALIAS_NODES = 10_000  # nodes that aliases may add beyond those written out in the file
# What YAML accepts as printable; anything else (NUL, other C0 controls) is refused with its line.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


class _Loader(_BaseLoader):  # PyYAML's C or Python loader, chosen at import
    source_name = "<yaml>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):  # never built: an alias bomb as a key stays cheap
            kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
            raise ConfigError(loader.source_name, key_line, f"a mapping key must be a plain string, not {kind}")
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise ConfigError(loader.source_name, key_line, f"mapping key {_short(key)} must be a plain string")
        if key in result:
            raise ConfigError(
                loader.source_name, key_line,
                f"duplicate key {_short(key)} (first at line {result.key_lines[key]}); remove one of them",
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_line
    return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _check_bounds(text: str, source_name: str) -> None:
    """One pass over the parser's events, before anything is composed: refuse characters YAML
    does not allow (with their line), nesting deeper than MAX_DEPTH, recursive aliases and aliases
    that would expand to more than MAX_ALIAS_NODES extra nodes (an alias bomb)."""
    bad = _NON_PRINTABLE.search(text)
    if bad:
        raise ConfigError(source_name, text.count("\n", 0, bad.start()) + 1, f"control character U+{ord(bad.group()):04X} is not allowed in YAML "
                                             "(a NUL byte or a binary file?)")
    open_sizes: list[list[Any]] = []  # per open collection: [size so far, anchor]
    sizes: dict[str, int] = {}  # anchor -> expanded node count, once its node is complete
    written = expanded = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(open_sizes) >= MAX_DEPTH:
                raise ConfigError(source_name, line, f"nested deeper than {MAX_DEPTH} levels; "
                                                     "a matrix or patch record never needs that")
            open_sizes.append([1, event.anchor])
            written += 1
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            size, anchor = open_sizes.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            written += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                if any(anchor == event.anchor for _, anchor in open_sizes):
                    raise ConfigError(source_name, line, f"alias *{event.anchor} refers to a node that contains "
                                                         "it (a recursive alias)")
                continue  # an undefined alias: the composer reports it with its line
            size = sizes[event.anchor]
            expanded += size
            if expanded > MAX_ALIAS_NODES and expanded > written:
                raise ConfigError(source_name, line, f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                                                     "(an alias bomb?); write the values out")
        else:
            continue
        if open_sizes:
            open_sizes[-1][0] += size


def load_yaml_text(text: str, source_name: str) -> Any:
    """Parse YAML text (bounded: see _check_bounds); syntax errors become a ConfigError naming the line."""
    try:
        _check_bounds(text, source_name)
        loader = _Loader(text)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source_name) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source_name, None, f"invalid YAML: {exc}") from None
    loader.source_name = source_name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source_name) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source_name, None, f"invalid YAML: {exc}") from None
    except RecursionError:  # merge keys nest without events showing it; never seen below MAX_DEPTH
        raise ConfigError(source_name, None, "nested too deeply (merge keys?)") from None
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError, source_name: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    problem = exc.problem or exc.context or "invalid YAML"
    return ConfigError(source_name, line, f"invalid YAML: {problem}")


def decode_text(data: bytes, source_name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(source_name, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def load_yaml_file(path: Path) -> Any:
    path = Path(path)
    if str(path) in ("", "."):
        raise ConfigError(str(path), None, "no file named")
    data = read_bounded(path, what="YAML file")
    return load_yaml_text(decode_text(data, str(path)), str(path))
