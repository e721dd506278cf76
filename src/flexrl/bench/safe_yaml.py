"""User YAML files read safely, with the line of every value kept for error messages.

A task file is data a user hands the benchmark, so reading it must neither run code nor blow up: only
YAML's plain types are built (``yaml.SafeLoader``), aliases are refused before anything is expanded
(an alias bomb of nested anchors stops at its first ``*``), nesting is capped (deep ``[[[...]]]``
would exhaust the composer's recursion), the file size is capped, duplicate keys are an error instead
of the last one silently winning, and dates stay strings. Every problem is one line, ``file:line: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1_000_000
"""Larger files are refused unread: a suite of hundreds of tasks is a few tens of kB."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings accepted (a task needs 7)."""


class YamlFileError(ValueError):
    """A file that cannot be read as plain YAML: one line, ``<file>:<line>: <what>, got <value>; allowed: <...>``."""


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file: its plain data and the node tree that knows each value's line.

    Attributes:
        path: the file.
        data: dicts, lists, strings, numbers, booleans and None.
        node: the composed node of ``data``, for :meth:`locate`.
    """

    path: Path
    data: Any
    node: yaml.Node

    def locate(self, loc: tuple) -> tuple[int, tuple]:
        """The line of the value at ``loc`` (keys and list indexes) and the part of ``loc`` found in the file.

        The line is that of the key for a mapping's value, of the item for a list's. Parts that name no
        key or index here (a validator's tag, a missing key) are skipped: a missing key gives the line
        of the mapping that lacks it.
        """
        node, mark, found = self.node, self.node.start_mark, []
        for part in loc:
            pair = None
            if isinstance(node, yaml.MappingNode):  # a key's line: a block value starts on the next one
                pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                pair = (node.value[part], node.value[part])
            if pair is not None:
                mark, node = pair[0].start_mark, pair[1]
                found.append(part)
        return mark.line + 1, tuple(found)


class _Refused(yaml.YAMLError):
    """Something this loader refuses, with the mark where it starts."""

    def __init__(self, mark: yaml.Mark, message: str) -> None:
        super().__init__(message)
        self.mark, self.message = mark, message


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader without aliases, deep nesting or duplicate keys; errors in values carry their mark."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"a YAML alias, got *{event.anchor}; allowed: no aliases (write the value out)")
        if self.depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, f"nesting too deep, got more than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH}")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise _Refused(key.start_mark, f"duplicate key, got {key.value!r} twice; allowed: each key once")
                seen.add(key.value)
        return super().construct_mapping(node, deep)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except ValueError as err:  # e.g. an integer of more digits than Python converts
            reason = str(err).split(":")[0]
            raise _Refused(node.start_mark, f"a value that cannot be read ({reason}), got {_snippet(node)}; "
                                            "allowed: plain strings, numbers, booleans, lists and mappings") from None


_PlainLoader.add_constructor("tag:yaml.org,2002:timestamp", _PlainLoader.construct_yaml_str)


def _snippet(node: yaml.Node) -> str:
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
    return repr(text if len(text) <= 40 else text[:37] + "...")


def read_yaml(path: str | Path, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Read and parse one YAML file.

    Raises:
        YamlFileError: one line naming the file, the line and the problem (unreadable, too large, not
            UTF-8, not YAML, empty, an alias, too deep, a duplicate key).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as err:
        raise YamlFileError(f"{path}:1: cannot read the file, got {err.strerror or err}; allowed: a readable YAML file") from None
    if len(raw) > max_bytes:
        raise YamlFileError(f"{path}:1: file too large, got more than {max_bytes} bytes; allowed: at most {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise YamlFileError(f"{path}:{line}: not UTF-8 text, got byte 0x{raw[err.start]:02x}; allowed: UTF-8 text") from None
    try:
        loader = _PlainLoader(text)  # checks that every character is printable
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _Refused as err:
        raise YamlFileError(f"{path}:{err.mark.line + 1}: {err.message}") from None
    except yaml.reader.ReaderError as err:
        line = text[:err.position].count("\n") + 1
        raise YamlFileError(f"{path}:{line}: a character YAML does not allow, got {chr(err.character)!r}; "
                            "allowed: printable text") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(f"{err.context or ''} {err.problem or ''}".split())
        got = text.splitlines()[line - 1].strip() if line <= len(text.splitlines()) else ""
        raise YamlFileError(f"{path}:{line}: not valid YAML ({problem}), got {got[:60]!r}; allowed: YAML mappings, "
                            "lists and plain values") from None
    except yaml.YAMLError as err:
        raise YamlFileError(f"{path}:1: not valid YAML, got {' '.join(str(err).split())[:80]}; allowed: YAML") from None
    if node is None:
        raise YamlFileError(f"{path}:1: empty file, got no YAML document; allowed: a YAML mapping")
    return YamlDocument(path, data, node)
