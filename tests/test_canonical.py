"""Pure tests of sessionfence.canonical: encodings, the opaque-JSON gate and the hash scrub."""

from __future__ import annotations

import hashlib
import math
from enum import StrEnum
from typing import Any

import pytest

from sessionfence.canonical import (
    MAX_JSON_DEPTH,
    canonical,
    check_json,
    dumps,
    loads,
    scrub_volatile,
    sha256_hex,
)
from sessionfence.errors import BackendError, InvalidRequest

MB_TEXT = "x" * (1024 * 1024)


def nested_lists(depth: int) -> list[Any]:
    """``depth`` nested containers: nested_lists(1) == []."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# ---- encodings -------------------------------------------------------------------------------------------


def test_dumps_keeps_key_order_and_loads_round_trips() -> None:
    value = {"b": 1, "a": [1, 2.5, None, True, "é"]}
    assert dumps(value) == '{"b":1,"a":[1,2.5,null,true,"é"]}'.encode()
    assert loads(dumps(value)) == value
    assert loads(dumps(value).decode()) == value


def test_loads_raises_backend_error_naming_what() -> None:
    with pytest.raises(BackendError, match="manifest blob is not valid JSON"):
        loads(b"not json", "manifest blob")


def test_dumps_and_canonical_refuse_unencodable_with_invalid_request() -> None:
    for bad in (2**64, {1: "int key"}, object()):
        with pytest.raises(InvalidRequest):
            dumps(bad)
        with pytest.raises(InvalidRequest):
            canonical(bad)


def test_canonical_sorts_keys_at_every_depth_by_code_point() -> None:
    value = {"b": {"z": 1, "a": [{"d": 1, "c": 2}]}, "a": 0, "\U0001f600": 1, "\uffff": 2, "B": 3}
    assert canonical(value) == (
        '{"B":3,"a":0,"b":{"a":[{"c":2,"d":1}],"z":1},"\uffff":2,"\U0001f600":1}'.encode()
    )


def test_canonical_string_escapes_match_serde_json() -> None:
    value = '\x00\x01\x08\x09\x0a\x0c\x0d\x1f"\\/\x7fé\u2028'
    assert (
        canonical(value) == b'"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\\"\\\\/\x7f' + "é\u2028".encode() + b'"'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, b"1.0"),
        (1e20, b"1e20"),
        (1e16, b"1e16"),
        (1e15, b"1000000000000000.0"),
        (1e-7, b"1e-7"),
        (0.00001, b"0.00001"),
        (1.5e300, b"1.5e300"),
        (-2.5e-300, b"-2.5e-300"),
        (-0.0, b"-0.0"),
        (0.1, b"0.1"),
        (123456789.0, b"123456789.0"),
        (1.7976931348623157e308, b"1.7976931348623157e308"),
    ],
)
def test_canonical_floats_use_serde_json_forms(value: float, expected: bytes) -> None:
    assert canonical(value) == expected
    assert float(canonical(value)) == value


def test_exponent_fix_leaves_strings_alone() -> None:
    value = {"e+": '1e+20 and \\"e+\\"', "n": [1e21, 'x"e+', 2e-30]}
    out = canonical(value)
    assert out == b'{"e+":"1e+20 and \\\\\\"e+\\\\\\"","n":[1e21,"x\\"e+",2e-30]}'
    assert loads(out) == value


def test_integers_are_exact() -> None:
    for value in (0, -1, 2**63 - 1, 2**64 - 1, -(2**63)):
        assert canonical(value) == str(value).encode()
        assert loads(canonical([value])) == [value]


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


# ---- check_json ------------------------------------------------------------------------------------------


class Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        2**64 - 1,
        -(2**63),
        -0.0,
        1.5e300,
        "\u0000",
        "é\U0001f600",
        [],
        {},
        [[], [[]]],
        {"a": {"b": [1, {"c": None}]}},
        MB_TEXT,
        [MB_TEXT],
        Colour.RED,
        nested_lists(MAX_JSON_DEPTH),
    ],
)
def test_check_json_accepts(value: Any) -> None:
    check_json(value, "payload")
    assert loads(dumps(value)) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "not finite"),
        (float("inf"), "not finite"),
        ([1, {"x": float("-inf")}], "not finite"),
        ((1, 2), "tuple"),
        ({"a": [(1,)]}, "tuple"),
        (2**64, "outside"),
        (-(2**63) - 1, "outside"),
        ([{"deep": [2**100]}], "outside"),
        ({1: "x"}, "not a str"),
        ({Colour.RED: "x"}, "not a str"),
        ({"ok": {None: 1}}, "not a str"),
        ({1, 2}, "unsupported type set"),
        (b"bytes", "unsupported type bytes"),
        (object(), "unsupported type object"),
        ("\ud800", "surrogate"),
        ({"\udfff": 1}, "surrogate"),
        (nested_lists(MAX_JSON_DEPTH + 1), "deeper"),
    ],
)
def test_check_json_refuses_naming_what(value: Any, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason) as info:
        check_json(value, "checkpoint.tool_state")
    assert "checkpoint.tool_state" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_check_json_refuses_float_subclass() -> None:
    class Money(float):
        pass

    with pytest.raises(InvalidRequest, match="Money"):
        check_json([Money(1.5)], "payload")


def test_check_json_survives_very_deep_nesting_and_cycles() -> None:
    with pytest.raises(InvalidRequest, match="deeper"):
        check_json(nested_lists(200_000), "payload")
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidRequest, match="deeper"):
        check_json(cyclic, "payload")
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(InvalidRequest, match="deeper"):
        check_json(looped, "payload")


def test_check_json_depth_limit_fits_orjson_with_envelope() -> None:
    deepest = nested_lists(MAX_JSON_DEPTH)
    envelope: Any = deepest
    for _ in range(30):  # far more wrapping than any stored record adds
        envelope = {"wrap": envelope}
    assert loads(canonical(envelope)) == envelope


def test_check_json_on_large_flat_values_is_fine() -> None:
    check_json({"items": [{"i": i, "f": i / 3, "s": str(i)} for i in range(50_000)]}, "payload")
    check_json({"text": MB_TEXT, "nested": [[MB_TEXT]]}, "payload")


# ---- scrub -----------------------------------------------------------------------------------------------


def test_scrub_drops_volatile_keys_everywhere() -> None:
    value = {
        "node_id": "n",
        "parent_node_id": "p",
        "leaf_node_id": "l",
        "timestamp": "t",
        "id": "kept: plain object",
        "body": [{"node_id": "deep", "keep": 1, "inner": {"timestamp": "x", "leaf_node_id": None}}],
    }
    assert scrub_volatile(value) == {"id": "kept: plain object", "body": [{"keep": 1, "inner": {}}]}


def test_scrub_drops_ids_of_messages_and_parts_at_any_depth() -> None:
    part = {"id": "p1", "kind": "Text", "content": "hi", "prune_state": "Intact"}
    message = {"id": "m1", "role": "User", "parts": [part], "origin": None}
    value = {"event": {"Conversation": message}, "opaque": [[{"wrapped": message}]]}
    scrubbed_message = {"role": "User", "parts": [{"kind": "Text", "content": "hi", "prune_state": "Intact"}]}
    scrubbed_message["origin"] = None
    assert scrub_volatile(value) == {
        "event": {"Conversation": scrubbed_message},
        "opaque": [[{"wrapped": scrubbed_message}]],
    }


def test_scrub_keeps_ids_of_near_misses() -> None:
    near_misses = [
        {"id": 1, "role": "User"},
        {"id": 2, "parts": []},
        {"id": 3, "kind": "Text", "content": "x"},
        {"id": 4, "content": "x", "prune_state": "Intact"},
    ]
    assert scrub_volatile(near_misses) == near_misses


def test_scrub_does_not_mutate_its_input() -> None:
    message = {"id": "m", "role": "User", "parts": [{"node_id": "x"}]}
    value = {"node_id": "n", "list": [message], "tuple": ({"timestamp": 1},)}
    snapshot = repr(value)
    out = scrub_volatile(value)
    assert repr(value) == snapshot
    assert out == {"list": [{"role": "User", "parts": [{}]}], "tuple": [{}]}


def test_scrub_keeps_scalars_and_floats_exactly() -> None:
    value = {"z": -0.0, "big": 2**64 - 1, "s": "\u0000"}
    out = scrub_volatile(value)
    assert out == value
    assert math.copysign(1.0, out["z"]) == -1.0
