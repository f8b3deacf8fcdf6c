"""Plain data, checked: what a foreign file may hold once parsed, without recursion and within bounds.

Parsers build what a file describes: a YAML alias or a pickle can make a list that contains itself, and a
crafted file can nest thousands of levels deep. :func:`check_plain` walks the parsed value iteratively (never a
RecursionError) and refuses cycles, structures nested deeper than ``max_depth`` or larger than ``max_nodes``, and
any value that is not plain data, an accepted leaf (``is_leaf``, e.g. a checked tensor) or an instance of
``allowed`` (whose attributes are walked too).
"""
from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Callable, Iterable

from utils.errors import file_error

__all__ = ["PLAIN_SCALARS", "check_plain"]

PLAIN_SCALARS = (str, bytes, int, float, bool, complex, type(None), PurePath)


def _children(path: Path, item: Any, allowed: tuple[type, ...]) -> list[Any]:
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, (list, tuple, set, frozenset)):
        return list(item)
    if allowed and isinstance(item, allowed):
        return list(vars(item).values()) if hasattr(item, "__dict__") else []
    raise file_error(path, f"holds an object of type {type(item).__name__}, not plain data")


def check_plain(path: str | Path, value: Any, is_leaf: Callable[[Any], bool] | None = None, allowed: Iterable[type] = (),
                max_depth: int = 64, max_nodes: int = 2_000_000) -> None:
    """Raise a UserInputError naming ``path`` unless ``value`` is bounded, acyclic plain data (see the module)."""
    path, allowed = Path(path), tuple(allowed)
    stack: list[tuple[Any, int, frozenset]] = [(value, 0, frozenset())]
    nodes = 0
    while stack:
        item, depth, ancestors = stack.pop()
        nodes += 1
        if nodes > max_nodes or depth > max_depth:
            raise file_error(path, f"holds a structure of more than {max_nodes:,} values or {max_depth} levels; refusing it")
        if isinstance(item, PLAIN_SCALARS) or (is_leaf is not None and is_leaf(item)):
            continue
        if id(item) in ancestors:
            raise file_error(path, "holds a structure that contains itself; refusing it")
        inner = ancestors | {id(item)}
        stack.extend((child, depth + 1, inner) for child in _children(path, item, allowed))
