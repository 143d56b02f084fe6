"""Opaque JSON round-trips exactly (contract §0 "Opaque JSON", §1.3): edge-case values in every opaque slot
of a commit come back equal, with the same types (int stays int, -0.0 keeps its sign), through
`load_session`, `load_session_head_meta` and `load_node`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from builders import minimal, node
from redisbed import Backend

from sessionfence import (
    ActivePath,
    AsyncRedisStore,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    PersistedSessionConfig,
    QueuedWorkBatchDraft,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
    SessionGraph,
    SessionNodeRecord,
    SlotPolicy,
)

MB_TEXT = ("payload ü ✓ 𝄞 " * 80_000)[: 1024 * 1024]

EDGES: dict[str, Any] = {
    "max_i64": 2**63 - 1,
    "min_i64": -(2**63),
    "max_u64": 2**64 - 1,
    "neg_zero": -0.0,
    "pos_zero": 0.0,
    "int_zero": 0,
    "one_float": 1.0,
    "tiny": 1e-7,
    "huge": 1e20,
    "pi": 3.141592653589793,
    "nul": "\u0000",
    "nul_inside": "a\u0000b\u0000",
    "nested_empty_arrays": [[], [[]]],
    "empty_object": {},
    "nested_empty_objects": {"a": {}, "b": [{}, []]},
    "unicode": "héllo wörld ✓ 𝄞 中文 \u2028\u2029 \U0010ffff",
    "escapes": '"\\\n\t\b\f\r\x01\x1f/',
    "bools": [True, False, None],
    "mixed": [1, 1.0, "1", [1], {"1": 1}],
    "unicode_key_ü": {"ключ": "значение", "": "empty key"},
    "lua_looking": "'; redis.call('FLUSHALL'); --",
    "json_looking": '{"schema_version": 99}',
    "deep": [[[[[[[[[[{"x": [-0.0]}]]]]]]]]]],
}


def payload(tag: str, with_mb: bool = True) -> dict[str, Any]:
    value: dict[str, Any] = {"tag": tag, **EDGES}
    if with_mb:
        value["mb"] = MB_TEXT
    return value


def assert_exact(got: Any, want: Any, path: str = "$") -> None:
    """Equality that also demands equal types (1 != 1.0 here) and equal float signs (-0.0 != 0.0)."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert got.keys() == want.keys(), f"{path}: keys differ"
        for key in want:
            assert_exact(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_exact(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), (
            f"{path}: {got!r} != {want!r}"
        )
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def check_edges(value: dict[str, Any], where: str) -> None:
    """The explicit checks, on top of `assert_exact`: int types and the sign of -0.0."""
    assert type(value["max_i64"]) is int and value["max_i64"] == 2**63 - 1, where
    assert type(value["min_i64"]) is int and value["min_i64"] == -(2**63), where
    assert type(value["max_u64"]) is int and value["max_u64"] == 2**64 - 1, where
    assert type(value["int_zero"]) is int, where
    assert type(value["one_float"]) is float, where
    assert type(value["neg_zero"]) is float and math.copysign(1.0, value["neg_zero"]) == -1.0, where
    assert math.copysign(1.0, value["pos_zero"]) == 1.0, where
    assert math.copysign(1.0, value["deep"][0][0][0][0][0][0][0][0][0][0]["x"][0]) == -1.0, where
    assert value["nul"] == "\x00" and value["nested_empty_arrays"] == [[], [[]]], where
    assert value["empty_object"] == {} and type(value["empty_object"]) is dict, where
    if "mb" in value:
        assert value["mb"] == MB_TEXT, where


@pytest.fixture
def store(backend: Backend, namespace: str, key_prefix: str) -> AsyncRedisStore:
    return AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)


async def commit_leased(store: AsyncRedisStore, commit: RuntimeCommit) -> Any:
    granted = await store.try_claim_session_execution_lease(commit.session_id, "payloads", 60_000)
    assert granted is not None
    return await store.commit_runtime_state(
        commit.with_session_execution_lease(granted.fence()).releasing_session_execution_lease(
            granted.completion()
        )
    )


def body_node(node_id: str, parent: str | None, body: Any) -> SessionNodeRecord:
    return SessionNodeRecord(
        node_id=node_id,
        parent_node_id=parent,
        timestamp="2026-06-02T00:00:00Z",
        caused_by={"type": "tool_call", "edge": body["nested_empty_arrays"]},
        kind="plugin",
        plugin_type="edge-cases",
        body=body,
    )


async def test_opaque_values_round_trip_exactly(store: AsyncRedisStore) -> None:
    frame = {
        "frame_id": "f",
        "status": "active",
        "assignment": payload("frame"),
        "execution_state_snapshot": [0, 255],
    }
    model = {"id": "edge-model", "spec": payload("model")}
    tool_state = {"generation": 2**63 - 1, "tools": payload("tools")}
    plugin_snapshot = {"plugins": payload("plugins", with_mb=False)}
    body = payload("body")
    commit = minimal(
        "root",
        config=PersistedSessionConfig("provider ✓", model),
        agent_frames=[frame, {}, []],
        current_agent_frame_id="f",
        graph=GraphReplaceFull(
            SessionGraph([node("root-node"), body_node("edge", "root-node", body)], "edge")
        ),
        tool_state=tool_state,
        plugin_snapshot=plugin_snapshot,
        protocol_turn_options={"payload": payload("options", with_mb=False)},
        last_prompt_usage={"prompt": EDGES["nested_empty_arrays"], "neg": -0.0},
        execution_state=bytes(range(256)) * 4096,
    )
    result = await commit_leased(store, commit)
    assert result.head_revision == 1

    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert_exact(read.agent_frames, [frame, {}, []])
    check_edges(read.agent_frames[0]["assignment"], "agent frame")
    assert read.config == commit.config
    assert_exact(read.config.model, model)
    check_edges(read.config.model["spec"], "model spec")
    assert read.config.provider_id == "provider ✓"
    assert_exact(read.checkpoint.tool_state, tool_state)
    check_edges(read.checkpoint.tool_state["tools"], "tool_state")
    assert type(read.checkpoint.tool_state["generation"]) is int
    assert_exact(read.checkpoint.plugin_snapshot, plugin_snapshot)
    check_edges(read.checkpoint.plugin_snapshot["plugins"], "plugin_snapshot")
    assert_exact(
        read.checkpoint.turn_state.protocol_turn_options, {"payload": payload("options", with_mb=False)}
    )
    assert_exact(read.checkpoint.turn_state.last_prompt_usage, {"prompt": [[], [[]]], "neg": -0.0})
    assert read.checkpoint.execution_state == bytes(range(256)) * 4096
    assert [n.node_id for n in read.graph.nodes] == ["root-node", "edge"]
    stored = read.graph.nodes[1]
    assert stored == commit.graph.graph.nodes[1]  # type: ignore[union-attr]
    assert_exact(stored.to_wire(), commit.graph.graph.nodes[1].to_wire())  # type: ignore[union-attr]
    check_edges((stored.model_extra or {})["body"], "node body (load_session)")

    loaded = await store.load_node("edge")
    assert loaded is not None
    assert_exact(loaded.to_wire(), body_node("edge", "root-node", body).to_wire())
    check_edges((loaded.model_extra or {})["body"], "node body (load_node)")
    assert loaded.caused_by == {"type": "tool_call", "edge": [[], [[]]]}

    head = await store.load_session_head_meta()
    assert head is not None
    assert_exact(head.agent_frames, [frame, {}, []])
    assert_exact(head.config.model, model)

    path = await store.load_session(ActivePath(None))
    assert path is not None
    assert_exact([n.to_wire() for n in path.graph.nodes], [n.to_wire() for n in read.graph.nodes])


async def test_stamped_commit_with_edge_payloads_replays_exactly(store: AsyncRedisStore) -> None:
    """The turn record stores the manifest verbatim too: a replay returns an equal result."""
    commit = minimal(
        "root", tool_state={"generation": 1, "tools": payload("t", with_mb=False)}, turn_index=2**63 - 1
    )
    commit = commit.with_turn_commit(RuntimeTurnCommitStamp("root", "edge-turn", commit.turn_commit_hash()))
    first = await commit_leased(store, commit)
    again = await store.commit_runtime_state(commit)
    assert again == first
    assert again.manifest.turn_state.turn_index == 2**63 - 1
    assert type(again.manifest.turn_state.turn_index) is int


async def test_appended_nodes_keep_bodies_and_odd_ids(store: AsyncRedisStore) -> None:
    """Node ids and parent links with spaces, NUL, braces, percent signs and non-ASCII survive storage."""
    odd_ids = ["a b", "nul\u0000id", "{brace}", "50%", "ключ", "-1 ", "3 abc", " "]
    await commit_leased(
        store, minimal("root", graph=GraphReplaceFull(SessionGraph([node(odd_ids[0])], None)))
    )
    nodes = [node(odd_ids[i], odd_ids[i - 1]) for i in range(1, len(odd_ids))]
    await commit_leased(store, minimal("root", graph=GraphAppend(nodes, odd_ids[-1])))
    read = await store.load_session(ActivePath(None))
    assert read is not None
    assert [n.node_id for n in read.graph.nodes] == odd_ids
    assert [n.parent_node_id for n in read.graph.nodes] == [None, *odd_ids[:-1]]
    for node_id in odd_ids:
        loaded = await store.load_node(node_id)
        assert loaded is not None and loaded.node_id == node_id
        assert loaded.event == {"Protocol": {"plugin_id": "conformance", "payload": {"node": node_id}}}  # type: ignore[attr-defined]
    # An empty-string parent is a real (unknown) parent, not "no parent".
    await commit_leased(store, minimal("root", graph=GraphAppend([node("orphan", "")], "orphan")))
    orphan = await store.load_node("orphan")
    assert orphan is not None and orphan.parent_node_id == ""
    walked = await store.load_session(ActivePath(None))
    assert walked is not None and [n.node_id for n in walked.graph.nodes] == ["orphan"]


@pytest.mark.parametrize("odd_namespace", ["ns{with}braces", "ns%7Bencoded%7D", "{}", "ünïcode ns"])
async def test_odd_namespace_names_stay_in_one_slot(
    backend: Backend, key_prefix: str, odd_namespace: str
) -> None:
    store = AsyncRedisStore(backend.async_client(), odd_namespace, key_prefix=key_prefix)
    other = AsyncRedisStore(backend.async_client(), odd_namespace + "x", key_prefix=key_prefix)
    await commit_leased(store, minimal("root", tool_state=payload("ns", with_mb=False)))
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    check_edges(read.checkpoint.tool_state, "tool_state")
    assert await other.load_session(FullGraph()) is None
    # Percent-encoding is injective: a name that looks already encoded gets its own keys.
    lookalike = odd_namespace.replace("{", "%7B").replace("}", "%7D")
    if lookalike != odd_namespace:
        twin = AsyncRedisStore(backend.async_client(), lookalike, key_prefix=key_prefix)
        assert twin.keys.base != store.keys.base
        assert await twin.load_session(FullGraph()) is None


async def test_queued_payloads_round_trip_exactly(store: AsyncRedisStore) -> None:
    payloads = [
        payload("queued"),
        {"type": "session_command", "command": {"kind": "reset_session", "reason": ""}},
    ]
    batch = await store.enqueue_queued_work(
        QueuedWorkBatchDraft(
            session_id="root",
            delivery_policy=DeliveryPolicy.EARLIEST_SAFE_BOUNDARY,
            slot_policy=SlotPolicy.EXCLUSIVE,
            payloads=payloads,
        )
    )
    assert_exact([item.payload for item in batch.items], payloads)
    listed = await store.list_queued_work("root")
    assert len(listed) == 1
    assert_exact([item.payload for item in listed[0].items], payloads)
    check_edges(listed[0].items[0].payload, "queued payload")


async def test_empty_execution_state_and_empty_strings_round_trip(store: AsyncRedisStore) -> None:
    """An empty body is a stored blob, not an absent one; an empty leaf id is a leaf, not None."""
    commit = minimal(
        "root", execution_state=b"", current_agent_frame_id="", graph=GraphReplaceFull(SessionGraph([], ""))
    )
    result = await commit_leased(store, commit)
    assert (
        result.manifest.execution_state_ref
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert read.checkpoint.execution_state_ref == result.manifest.execution_state_ref
    assert read.checkpoint.execution_state == b""
    assert read.graph.leaf_node_id == ""
    path = await store.load_session(ActivePath(None))
    assert path is not None and path.graph.nodes == [] and path.graph.leaf_node_id == ""
    head = await store.load_session_head_meta()
    assert head is not None and head.leaf_node_id == "" and head.current_agent_frame_id == ""
    # Empty JSON containers are bodies too.
    await commit_leased(store, minimal("root", tool_state={}, plugin_snapshot=[]))
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert read.checkpoint.tool_state == {} and type(read.checkpoint.tool_state) is dict
    assert read.checkpoint.plugin_snapshot == [] and type(read.checkpoint.plugin_snapshot) is list


@pytest.mark.parametrize(
    ("session_id", "owner_id"),
    [
        ("s p a c e", "o w\nner"),
        ("{tag}", "50%"),
        ("nul\u0000sid", "nul\u0000owner"),
        ("ключ", "a:b:1:2"),
        ("a:b", "c"),
        ("1 2 3 4", "5 6 7 8"),
    ],
)
async def test_odd_session_and_owner_ids_in_leases_and_commits(
    backend: Backend, namespace: str, key_prefix: str, session_id: str, owner_id: str
) -> None:
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    first = await store.try_claim_session_execution_lease(session_id, owner_id, 60_000)
    assert first is not None and first.fencing_token == 1
    assert first.lease_token == f"{session_id}:{owner_id}:{first.claimed_at_epoch_ms}:1"
    assert await store.try_claim_session_execution_lease(session_id, owner_id, 60_000) is None
    renewed = await store.renew_session_execution_lease(first.fence(), 30_000)
    assert renewed.fence() == first.fence()
    result = await store.commit_runtime_state(
        minimal(session_id, tool_state={"owner": owner_id}).with_session_execution_lease(first.fence())
    )
    assert result.head_revision == 1
    await store.release_session_execution_lease(first.completion())
    second = await store.try_claim_session_execution_lease(session_id, owner_id, 60_000)
    assert second is not None and second.fencing_token == 2
    read = await store.load_session(FullGraph())
    assert read is not None and read.session_id == session_id
    assert read.checkpoint is not None and read.checkpoint.tool_state == {"owner": owner_id}
