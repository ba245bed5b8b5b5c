"""Loading untrusted YAML with bounded work: no tags beyond the safe ones, no alias bombs.

``yaml.safe_load`` already refuses ``!!python/...`` tags, but it builds aliases as shared
references, so a few hundred bytes of nested anchors (a "billion laughs") make a structure whose
*expanded* size is astronomical. Nothing is spent while it is built, but anything that walks it
(validation, ``repr`` in an error message, JSON export) hangs and fills memory. A recursive
alias (``&a [*a]``) makes a cycle that recursive validation never leaves.

:func:`load_yaml_bounded` composes the document into nodes, counts the nodes of its expansion
(each distinct node once, memoised, so the count itself is linear in the document) and refuses
documents whose expansion exceeds ``max_nodes`` or that contain a cycle, before anything is
constructed. Deeply nested documents (which make PyYAML's recursive composer overflow the
stack) are refused too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

__all__ = ["MAX_YAML_NODES", "load_yaml_bounded"]

#: Largest accepted expanded size (scalars, sequences and mappings, aliases counted expanded).
#: A large real strategy (hundreds of gates, polygons with hundreds of vertices) or study
#: manifest has well under 100,000.
MAX_YAML_NODES = 1_000_000


def _expanded_size(root: yaml.Node, limit: int) -> int | None:
    """Nodes in the expansion of ``root``, or ``None`` when the graph has a cycle.

    Stops counting (returning a value above ``limit``) as soon as the limit is passed.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1
            for child in _children(node):
                total += size[id(child)]
                if total > limit:
                    return total
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            return None
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            ckey = id(child)
            if ckey in on_path:
                return None
            if ckey not in size:
                stack.append((child, False))
    return size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml_bounded(
    text: str,
    fail: Callable[[str], Exception],
    *,
    check: Callable[[yaml.Node], None] | None = None,
    max_nodes: int = MAX_YAML_NODES,
) -> Any:
    """Parse untrusted YAML text with the safe loader, refusing bombs, cycles and deep nesting.

    Parameters
    ----------
    text
        The document.
    fail
        Builds the exception to raise from a message (it names the file).
    check
        Called with the composed root node before construction (e.g. a duplicate-key check).
    max_nodes
        Largest accepted expanded size.

    Returns
    -------
    Any
        The constructed document (``None`` for an empty one).

    Raises
    ------
    Exception
        ``fail(message)``: invalid YAML, an unsafe tag, an expansion over ``max_nodes``, a
        recursive alias, or nesting too deep to parse.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, max_nodes)
        if size is None:
            raise fail("refused a recursive alias (an anchor used inside itself)")
        if size > max_nodes:
            raise fail(
                f"refused: the document expands (through anchors and aliases) to more than "
                f"{max_nodes:,} nodes; an alias bomb?"
            )
        if check is not None:
            check(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise fail(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise fail("refused: the document is nested too deeply") from None
    finally:
        loader.dispose()
