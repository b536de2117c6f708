"""Config errors told whole: every problem of a file at once (each undefined ``${VAR}``,
each invalid value), each naming its field as written in the file, and for an unknown key
the known key it was probably meant to be ("did you mean 'interval'?")."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from watcher.exceptions import ConfigError

Problem = tuple[str, str]  # (field path, what is wrong)


def path_of(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def raise_all(problems: Sequence[Problem]) -> None:
    """One :class:`ConfigError` for every problem: ``path`` and ``message`` are the first
    one's; the others follow in the message, one per line."""
    if not problems:
        return
    (where, what), rest = problems[0], problems[1:]
    more = "".join(f"\n  {p}: {m}" if p else f"\n  {m}" for p, m in rest)
    raise ConfigError(where, what + more)


def error_path(loc: Sequence[str | int], raw: Any) -> str:
    """Pydantic's location without the discriminator tags it inserts (``sinks.1.webhook``)."""
    parts: list[str | int] = []
    node = raw
    for part in loc:
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and (part == node.get("kind"))
        ):
            continue  # discriminated-union tag, not a key of the file
        parts.append(part)
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return path_of(parts)


def message(error: Mapping[str, Any], root: type[BaseModel], secret_keys: frozenset[str]) -> str:
    """What one pydantic error means, in the file's words."""
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        loc = tuple(error.get("loc", ()))
        known = known_keys(root, loc[:-1], secret_keys)
        close = difflib.get_close_matches(str(loc[-1]) if loc else "", known, n=1, cutoff=0.7)
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        tags = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown kind (expected one of {tags})"
    if kind == "union_tag_not_found":
        return "kind is missing"
    text = str(error.get("msg", "invalid value"))
    return text.removeprefix("Value error, ")


def known_keys(
    root: type[BaseModel], loc: Sequence[str | int], secret_keys: frozenset[str]
) -> list[str]:
    """The keys the mapping at ``loc`` (pydantic's location, tags included) may have."""
    candidates: list[Any] = [root]
    for part in loc:
        candidates = _step(candidates, part)
    keys: set[str] = set()
    for model in candidates:
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, field in model.model_fields.items():
                keys.add(field.alias or name)
                if name in secret_keys:
                    keys.add(f"{name}_file")
    return sorted(keys)


def _flat(annotation: Any) -> list[Any]:
    """The types an annotation may be (``Annotated`` and unions opened)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _flat(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(annotation) for t in _flat(arg)]
    return [annotation]


def _step(candidates: list[Any], part: str | int) -> list[Any]:
    out: list[Any] = []
    for tp in candidates:
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = next((f for n, f in tp.model_fields.items() if part in (n, f.alias)), None)
            if field is not None:
                out.extend(_flat(field.annotation))
        elif origin is list and isinstance(part, int):
            out.extend(_flat(get_args(tp)[0]))
        elif origin is dict and isinstance(part, str):
            out.extend(_flat(get_args(tp)[1]))
    if out or not isinstance(part, str):
        return out
    # A discriminated union's tag: the member whose ``kind`` is ``part``.
    return [tp for tp in candidates if part in _kinds(tp)]


def _kinds(tp: Any) -> tuple[Any, ...]:
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)) or "kind" not in tp.model_fields:
        return ()
    annotation = tp.model_fields["kind"].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()
