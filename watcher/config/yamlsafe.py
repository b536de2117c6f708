"""YAML read with limits, before anything is expanded: a config file is small, shallow and
has few aliases; a hostile one (a "billion laughs" alias bomb, a recursive alias, a file
nested thousands of levels deep) is refused with a clear error instead of freezing the
event loop or filling the memory.

PyYAML shares the object an alias points to, so parsing a bomb is cheap; what explodes is
every walk over the result (``${VAR}`` expansion, secret files, validation). So the
document is composed into nodes first, its size *as expanded* is counted on the nodes
(each node once, memoised), and only a document within the limits is constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a config with hundreds of sources and routes is ~100 KB
MAX_VALUES = 100_000  # scalars, keys and collections, counted as if every alias were a copy
MAX_DEPTH = 64  # nesting of mappings and lists


class YamlLimitError(ValueError):
    """The document is over a limit (its message says which)."""


def load_limited(text: str) -> Any:
    """``yaml.safe_load(text)`` within :data:`MAX_BYTES`, :data:`MAX_VALUES` and
    :data:`MAX_DEPTH`; raises :class:`YamlLimitError` or :class:`yaml.YAMLError`."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise YamlLimitError(f"the file is {size} bytes; a config is at most {MAX_BYTES}")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # PyYAML composes nested collections recursively
            raise YamlLimitError(
                f"the document is nested more than {MAX_DEPTH} levels deep"
            ) from None
        if node is None:
            return None
        _check(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check(root: yaml.Node) -> None:
    """Count the expanded size and the depth of ``root`` without recursion (a deep file
    must not hit Python's recursion limit here either)."""
    sizes: dict[int, int] = {}  # id(node) -> its expanded size, once known
    depths: dict[int, int] = {}  # id(node) -> its expanded depth, once known
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            if sizes[key] > MAX_VALUES:
                raise YamlLimitError(
                    f"the document expands to more than {MAX_VALUES} values "
                    "(aliases repeated inside aliases?)"
                )
            if depths[key] > MAX_DEPTH:
                raise YamlLimitError(f"the document is nested more than {MAX_DEPTH} levels deep")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlLimitError("an alias refers to a value that contains it (a cycle)")
        on_path.add(key)
        stack.append((node, True))
        if len(on_path) > MAX_DEPTH:
            raise YamlLimitError(f"the document is nested more than {MAX_DEPTH} levels deep")
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
