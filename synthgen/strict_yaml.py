"""YAML for job specs and params files: PyYAML's safe loader, but a key given twice is an error.

PyYAML keeps the last of two equal keys without a word, so a spec that sets
``seed`` twice runs with whichever came last. A spec is short and hand-edited;
a repeated key is a mistake, and the error names the key and both lines.
"""

from __future__ import annotations

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

_MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *base` may repeat and override keys on purpose


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys."""

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


def load_yaml(text: str) -> object:
    """Parse YAML text like ``yaml.safe_load``, raising ``yaml.YAMLError`` on a duplicate key."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
