"""YAML for job specs and params files: PyYAML's safe loader, but a key given twice is an error.

PyYAML keeps the last of two equal keys without a word, so a spec that sets
``seed`` twice runs with whichever came last. A spec is short and hand-edited;
a repeated key is a mistake, and the error names the key and both lines.

Bounded too: PyYAML composes nested nodes recursively, so a few thousand
``[`` ended in a ``RecursionError`` traceback, and aliases (``&a`` / ``*a``)
can make a short file expand into billions of values for whatever walks it
next (pydantic). Nesting deeper than ``MAX_DEPTH`` and documents that expand
to more than ``MAX_VALUES`` values are a ``yaml.YAMLError`` naming the limit.
"""

from __future__ import annotations

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

_MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *base` may repeat and override keys on purpose
MAX_DEPTH = 32  # a job spec nests 4 levels; params files a few more
MAX_VALUES = 100_000  # values after aliases are expanded; a spec has a few hundred


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys and nesting deeper than ``MAX_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"key {key!r} is given twice (first on line {first + 1})",
                                       key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(data: object) -> None:
    """Raise ``yaml.YAMLError`` when ``data`` holds more than ``MAX_VALUES`` values with aliases expanded.

    Iterative, and counting every visit: a shared (aliased) list counts once
    per place it appears, and a list that contains itself never ends the count.
    """
    pending, seen = [data], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise yaml.YAMLError(f"the document expands to more than {MAX_VALUES} values (aliases of aliases, "
                                 "or an alias inside itself?)")
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, (list, tuple, set)):
            pending.extend(value)


def load_yaml(text: str) -> object:
    """Parse YAML text like ``yaml.safe_load``; ``yaml.YAMLError`` on a duplicate key, deep nesting or a huge expansion."""
    data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    _check_expanded_size(data)
    return data
