"""The line-tracking YAML loader: a host file as plain data, and the line of every key and item.

PyYAML's own loader forgets where values came from; a host file's errors name their line, so
this loader composes nodes itself, remembering each path's line, refusing duplicate keys, tags
and alias bombs, and reading JSON (which is YAML) the same way.
"""

from __future__ import annotations

from typing import Any

import yaml

from vmqos.core.errors import FormatError
from vmqos.core.formats._common import MAX_DEPTH, check_size
from vmqos.core.formats.hostfile.places import FMT, Path, in_where, where
from vmqos.core.formats.hostfile.wire import VERSION
from vmqos.core.units import MAX_DIGITS

# Aliases let a small file expand to a huge one ("billion laughs"); no host needs this many values.
MAX_NODES = 200_000

_SEQ, _MAP, _INT = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map", "tag:yaml.org,2002:int"


def _too_deep(line: int, path: Path | None = None) -> FormatError:
    place = "" if path is None else f"{where(path)}: with its aliases and merge keys, "
    return FormatError(FMT, f"{place}nested more than {MAX_DEPTH} levels deep; a host file is a few levels "
                            "deep - is this the right file?", line=line)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH while it composes.

    PyYAML composes recursively: 5,000 open brackets end in a RecursionError deep inside it.
    """

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _too_deep(self.peek_event().start_mark.line + 1)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Composer:
    """Plain Python data from YAML nodes, with the 1-based line of every key and list item."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.nodes = 0
        self.depth = 0  # collections and merge keys being built, one inside the other
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FormatError(FMT, f"the file expands to more than {MAX_NODES} values (aliases?)", line=_line(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT:
                _check_digits(node, path)
            try:
                return self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise FormatError(FMT, f"{where(path)}: {getattr(exc, 'problem', exc)}", line=_line(node)) from None
        if id(node) in self.active:
            raise FormatError(FMT, f"{where(path)}: an alias refers to a mapping that contains it", line=_line(node))
        if node.tag not in (_SEQ, _MAP):
            raise FormatError(FMT, f"{where(path)}: the YAML tag {node.tag!r} is not allowed in a host file",
                              line=_line(node))
        self.active.add(id(node))
        self.enter(node, path)
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = _line(item)
                    items.append(self.value(item, (*path, index)))
                return items
            return self.mapping(node, path, {})
        finally:
            self.active.discard(id(node))
            self.depth -= 1

    def enter(self, node: yaml.Node, path: Path) -> None:
        """One level deeper: aliases and merge keys nest values the composer never saw nested."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _too_deep(_line(node), path)

    def mapping(self, node: yaml.Node, path: Path, into: dict[str, Any]) -> dict[str, Any]:
        """Fill `into` with the mapping's keys; YAML merge keys (`<<: *anchor`) add the keys not set."""
        if not isinstance(node, yaml.MappingNode):
            raise FormatError(FMT, f"{where(path)}: a merge key (<<) needs a mapping or a list of mappings",
                              line=_line(node))
        seen: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise FormatError(FMT, f"{where(path)}: keys must be plain strings", line=_line(key_node))
            key = str(key_node.value)  # as written: `on:` stays "on", `101:` stays "101"
            if key in seen:
                raise FormatError(FMT, f"duplicate key {key!r} {in_where(path)} (first at line {seen[key]})",
                                  line=_line(key_node))
            seen[key] = _line(key_node)
            if key in into:  # set by the mapping that merges this one
                continue
            self.lines[(*path, key)] = _line(key_node)
            into[key] = self.value(value_node, (*path, key))
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                if id(source) in self.active:
                    raise FormatError(FMT, f"{where(path)}: a merge key refers to a mapping that contains it",
                                      line=_line(source))
                self.active.add(id(source))
                self.enter(source, path)
                try:
                    self.mapping(source, path, into)
                finally:
                    self.active.discard(id(source))
                    self.depth -= 1
        return into


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_digits(node: yaml.ScalarNode, path: Path) -> None:
    """Refuse a YAML integer of more than MAX_DIGITS digits before Python computes with it.

    int() of more than 4,300 decimal digits raises ValueError, and no value vmqos takes needs
    more than MAX_DIGITS; hex, octal, binary and `1_000` spellings are counted the same way.
    """
    text = str(node.value).lstrip("+-").replace("_", "").replace(":", "")
    if text[:2].lower() in ("0x", "0o", "0b"):
        text = text[2:]
    if len(text) > MAX_DIGITS:
        raise FormatError(FMT, f"{where(path)}: a number of {len(text)} digits; no value vmqos takes has more "
                               f"than {MAX_DIGITS}", line=_line(node))


def load(text: str) -> tuple[Any, dict[Path, int]]:
    """The document as plain data, and the line of every path in it.

    Bounded before and while loading: the text's size (check_size), its nesting (MAX_DEPTH) and
    its integers (MAX_DIGITS digits), so that no input ends as a RecursionError or ValueError.
    """
    check_size(FMT, text)
    try:
        root = _compose(text)
    except yaml.YAMLError as first:
        if "\t" in text and text.lstrip().startswith(("{", "[")):
            # JSON indented with tabs: tabs are whitespace in JSON and invalid inside its strings.
            try:
                root = _compose(text.replace("\t", " "))
            except yaml.YAMLError:
                raise _yaml_error(text, first) from None
        else:
            raise _yaml_error(text, first) from None
    if root is None:
        raise FormatError(FMT, f"the file is empty; a host file starts with 'version: {VERSION}'", line=1)
    composer = _Composer()
    data = composer.value(root, ())
    composer.lines[()] = _line(root)
    if not isinstance(data, dict):
        raise FormatError(FMT, f"expected a mapping with 'version: {VERSION}' at the top, not a "
                               f"{type(data).__name__}", line=_line(root))
    return data, composer.lines


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=_Loader)


def _yaml_error(text: str, exc: yaml.YAMLError) -> FormatError:
    line = None
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        if exc.context_mark is not None and exc.problem_mark is not None \
                and exc.context_mark.line != exc.problem_mark.line:
            message += f" (the construct opened at line {exc.context_mark.line + 1})"
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        message = f"character {exc.character!r} is not allowed ({exc.reason})"
    else:
        message = str(exc)
    return FormatError(FMT, f"not valid YAML or JSON: {message}", line=line)
