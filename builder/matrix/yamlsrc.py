"""YAML loading that remembers line numbers, so every error can name `file:line`.

PyYAML drops positions and silently keeps the last of duplicate keys; both are wrong for a
configuration file people edit by hand, so mappings and sequences are built as subclasses
that carry the line of each key and item, and duplicate keys are an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from builder.errors import ConfigError


class LineDict(dict):
    """A mapping from YAML with the line of the mapping and of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from YAML with the line of the sequence and of each item."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    source_name = "<yaml>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise ConfigError(loader.source_name, key_line, f"mapping key {key!r} must be a plain string")
        if key in result:
            raise ConfigError(
                loader.source_name, key_line,
                f"duplicate key {key!r} (first at line {result.key_lines[key]}); remove one of them",
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_line
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, source_name: str) -> Any:
    """Parse YAML text; syntax errors become a ConfigError naming the line."""
    loader = _Loader(text)
    loader.source_name = source_name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(source_name, line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source_name, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found; pass an existing file (e.g. --matrix matrix.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc}") from None
    return load_yaml_text(text, str(path))
