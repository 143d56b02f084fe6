"""JSON encoding, canonical bytes and the opaque-JSON gate (pure: no I/O).

Two encodings exist on purpose. ``dumps`` is the storage form: plain orjson, fastest, key order as given.
``canonical`` is the form that gets hashed (contract §2.3.1 and §2.4 step 4): keys sorted by code point, no
whitespace, serde_json's number forms, so equal values always give equal bytes and, for values in lash's wire
form, the same bytes lash's Rust writer hashes.

orjson is lossy or partial on some Python values: NaN and infinities become ``null``; integers beyond 64 bits,
nesting deeper than 254 levels and lone surrogates are refused. So every caller-supplied opaque value goes
through ``check_json`` before anything is encoded: a refusal is an ``InvalidRequest`` raised before any I/O,
never a silently changed value or a stray ``TypeError`` halfway through a write.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import orjson

from sessionfence.errors import BackendError, InvalidRequest

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT",
    "MIN_JSON_INT",
    "canonical",
    "check_json",
    "dumps",
    "loads",
    "scrub_volatile",
    "sha256_hex",
]

MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**64 - 1
# orjson refuses more than 254 nested containers. Stored records wrap an opaque value in a few levels of
# their own (commit -> graph -> ReplaceFull -> nodes -> node -> event ...), so opaque values keep a margin.
MAX_JSON_DEPTH = 200

_SORTED = orjson.OPT_SORT_KEYS
# A JSON string token, or an exponent sign. orjson writes ``1e+20`` where serde_json writes ``1e20``; that is
# the only difference between their float forms (both shortest round-trip), and it only occurs in a number.
_EXPONENT_FIX = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|e\+')
_VOLATILE_KEYS = frozenset(("node_id", "parent_node_id", "leaf_node_id", "timestamp"))


def dumps(value: Any) -> bytes:
    """Storage encoding; refusals surface as ``InvalidRequest`` so a missed ``check_json`` fails cleanly."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as err:
        raise InvalidRequest(f"value is not encodable as JSON: {err}") from err


def _fix_exponent(match: re.Match[bytes]) -> bytes:
    token = match.group()
    return token if token[:1] == b'"' else b"e"


def canonical(value: Any) -> bytes:
    """Canonical bytes of contract §2.4 step 4 (sorted keys, serde_json number forms)."""
    try:
        out = orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError as err:
        raise InvalidRequest(f"value is not encodable as JSON: {err}") from err
    if b"e+" in out:  # rare: only huge or tiny floats, or text that happens to contain "e+"
        out = _EXPONENT_FIX.sub(_fix_exponent, out)
    return out


def loads(data: bytes | str, what: str = "stored record") -> Any:
    """Decode stored JSON; corrupt bytes are a ``BackendError`` because everything decoded here was stored."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise BackendError(f"{what} is not valid JSON: {err}") from err


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse(what: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{what} is not a JSON value: {reason}")


def _check_text(value: str, what: str, role: str) -> None:
    # ASCII is by far the common case and needs no encode; otherwise lone surrogates must be caught here
    # because orjson (and redis-py) refuse them only when writing.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(what, f"{role} {_short(value)} contains a lone surrogate") from None


def _check_scalar(value: Any, what: str) -> None:
    if value is None or value is True or value is False:
        return
    if isinstance(value, str):
        _check_text(value, what, "string")
        return
    if isinstance(value, int):
        if not MIN_JSON_INT <= value <= MAX_JSON_INT:
            raise _refuse(what, f"integer {value} is outside -2**63 .. 2**64-1")
        return
    if type(value) is float:  # orjson refuses float subclasses
        if not math.isfinite(value):
            raise _refuse(what, f"float {value!r} is not finite")
        return
    if isinstance(value, tuple):
        raise _refuse(what, "tuples are not JSON arrays; pass a list")
    raise _refuse(what, f"unsupported type {type(value).__name__}")


def check_json(value: Any, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse anything that would not survive an exact JSON round trip.

    Accepted: dict with ``str`` keys, list, str, int in ``-2**63 .. 2**64-1``, finite float, bool, None,
    nested at most ``max_depth`` containers deep (which also stops reference cycles). Iterative, so depth
    costs no Python stack.
    """
    if not isinstance(value, (dict, list)):
        _check_scalar(value, what)
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            raise _refuse(what, f"nested deeper than {max_depth} levels")
        children: Any
        if isinstance(container, dict):
            for key in container:
                if type(key) is not str:  # orjson refuses even str subclasses as keys
                    raise _refuse(what, f"object key {_short(key)} is not a str")
                if not key.isascii():
                    _check_text(key, what, "object key")
            children = container.values()
        else:
            children = container
        for child in children:
            # Exact-type dispatch first: it is the hot path of every commit (node bodies, payloads).
            t = type(child)
            if t is dict or t is list:
                stack.append((child, depth + 1))
            elif t is str:
                if not child.isascii():
                    _check_text(child, what, "string")
            elif t is int:
                if not MIN_JSON_INT <= child <= MAX_JSON_INT:
                    _check_scalar(child, what)
            elif child is None or t is bool:
                continue
            elif isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            else:
                _check_scalar(child, what)


def scrub_volatile(value: Any, *, max_depth: int = MAX_JSON_DEPTH + 16) -> Any:
    """Contract §2.4 step 3 on a wire value; returns a scrubbed copy and never mutates its input.

    In every object: drop ``id`` if it looks like a message (``role`` + ``parts``) or a message part
    (``kind`` + ``content`` + ``prune_state``), then drop ``node_id``, ``parent_node_id``, ``leaf_node_id``
    and ``timestamp``; recurse everywhere, opaque payloads included. Tuples are treated as the arrays orjson
    would write for them.
    """
    return _scrub(value, 0, max_depth)


def _scrub(value: Any, depth: int, max_depth: int) -> Any:
    if depth >= max_depth:
        raise InvalidRequest(f"value is nested deeper than {max_depth} levels")
    if isinstance(value, dict):
        drop_id = ("role" in value and "parts" in value) or (
            "kind" in value and "content" in value and "prune_state" in value
        )
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if key in _VOLATILE_KEYS or (drop_id and key == "id"):
                continue
            out[key] = _scrub(item, depth + 1, max_depth) if isinstance(item, (dict, list, tuple)) else item
        return out
    if isinstance(value, (list, tuple)):
        return [
            _scrub(item, depth + 1, max_depth) if isinstance(item, (dict, list, tuple)) else item
            for item in value
        ]
    return value
