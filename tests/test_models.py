"""Pure tests of sessionfence.models: wire forms, round trips, builders, turn_commit_hash (§1, §2.4)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from builders import draft, leased, minimal, minimal_commit, node, text, turn_input
from pydantic import ValidationError

from sessionfence.canonical import canonical, loads, scrub_volatile
from sessionfence.errors import BackendError
from sessionfence.models import (
    GRAPH_COMMIT_DELTA_TYPES,
    ActivePath,
    AttachmentIntent,
    AttachmentManifestEntry,
    DeliveryPolicy,
    DurabilityTier,
    FullGraph,
    GcReport,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    MergeKey,
    PersistedSessionConfig,
    PersistedSessionRead,
    PersistedTurnState,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    QueuedWorkCompletion,
    QueuedWorkItem,
    RuntimeCommit,
    RuntimeCommitResult,
    RuntimeTurnCommitStamp,
    SessionCheckpoint,
    SessionExecutionLease,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseFence,
    SessionGraph,
    SessionHeadMeta,
    SessionMeta,
    SessionNodeRecord,
    SessionPickerInfo,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
    VacuumReport,
    graph_commit_delta_from_wire,
)

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
AFTER = DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT
JOIN = SlotPolicy.JOIN
EXCL = SlotPolicy.EXCLUSIVE

MB_TEXT = "y" * (1024 * 1024)
# Everything an opaque payload must keep exactly.
AWKWARD: dict[str, Any] = {
    "max_i64": 2**63 - 1,
    "max_u64": 2**64 - 1,
    "min_i64": -(2**63),
    "neg_zero": -0.0,
    "float": 1e20,
    "nul": "\u0000",
    "nested_empty": [[], [[]]],
    "empty": {},
    "unicode": "é\U0001f600",
    "big_text": MB_TEXT,
    "null": None,
}

MINIMAL_ROOT_CANONICAL = (
    '{"agent_frames":[],"checkpoint":{"execution_state":null,"execution_state_ref":null,"plugin_snapshot":null,'
    '"plugin_snapshot_ref":null,"plugin_snapshot_revision":null,"tool_state":null,"tool_state_ref":null,'
    '"turn_state":{"protocol_turn_options":{"payload":{}},"token_usage":{"cached_input_tokens":0,'
    '"input_tokens":0,"output_tokens":0,"reasoning_tokens":0},"turn_index":0}},"committed_attachment_ids":[],'
    '"completed_queue_claims":[],"config":{"model":{"id":"","limits":{"context_window_tokens":1}},'
    '"provider_id":""},"current_agent_frame_id":"","expected_head_revision":null,'
    '"graph":{"ReplaceFull":{"nodes":[]}},"session_id":"root","turn_commit":null,"usage_deltas":[]}'
)
MINIMAL_ROOT_HASH = "babafa61b57087825cc699611557e73892e262f467817fbb80c609d9c80cb3e4"
MINIMAL_ROOT_TURN1_HASH = "7c932cb35f30e25b047c992f18dc60fb226390866d4456fc8e95137b76ae2cad"


def lease(session_id: str = "root", owner: str = "owner", fencing: int = 1) -> SessionExecutionLease:
    return SessionExecutionLease(
        session_id=session_id,
        owner_id=owner,
        lease_token=f"{session_id}:{owner}:1000:{fencing}",
        fencing_token=fencing,
        claimed_at_epoch_ms=1000,
        expires_at_epoch_ms=61_000,
    )


def message_node(
    node_id: str, parent: str | None, message_id: str, part_id: str, words: str
) -> SessionNodeRecord:
    return SessionNodeRecord(
        node_id=node_id,
        parent_node_id=parent,
        timestamp=f"2026-01-01T00:00:0{len(node_id) % 10}Z",
        kind="event",
        event={
            "Conversation": {
                "id": message_id,
                "role": "User",
                "parts": [{"id": part_id, "kind": "Text", "content": words, "prune_state": "Intact"}],
            }
        },
    )


def batch(batch_id: str = "qwb:" + "a" * 64, items: int = 1, **changes: Any) -> QueuedWorkBatch:
    fields: dict[str, Any] = {
        "batch_id": batch_id,
        "session_id": "root",
        "enqueue_seq": 3,
        "source_key": None,
        "delivery_policy": EARLIEST,
        "slot_policy": JOIN,
        "merge_key": MergeKey.group("g"),
        "available_at_ms": 0,
        "enqueued_at_ms": 1234,
        "items": [
            QueuedWorkItem(item_id=f"{batch_id}:item:{i}", payload=turn_input(f"t{i}")) for i in range(items)
        ],
    }
    fields.update(changes)
    return QueuedWorkBatch(**fields)


def rich_commit() -> RuntimeCommit:
    frame = {
        "frame_id": "frame-2",
        "session_id": "root",
        "previous_frame_id": "frame-1",
        "status": "active",
        "reason": "plan_mode",
        "created_at": "2026-06-02T00:00:00Z",
        "execution_state_snapshot": list(b"frame-vm"),
        "awkward": AWKWARD,
    }
    lz = lease()
    return RuntimeCommit(
        session_id="root",
        expected_head_revision=7,
        session_execution_lease=lz.fence(),
        release_session_execution_lease=lz.completion(),
        config=PersistedSessionConfig("openai", {"id": "gpt", "limits": {"context_window_tokens": 128000}}),
        agent_frames=[frame],
        current_agent_frame_id="frame-2",
        graph=GraphAppend([message_node("n2", "n1", "m2", "p2", "hello"), node("n3", "n2")], "n3"),
        checkpoint=HydratedSessionCheckpoint(
            turn_state=PersistedTurnState(
                turn_index=3,
                token_usage=TokenUsage(1, 2, 3, 4),
                last_prompt_usage={"prompt": 10},
                protocol_turn_options={"payload": {"x": [1.5, -0.0]}},
            ),
            tool_state_ref="r" * 64,
            tool_state={"generation": 9, "tools": {"t": AWKWARD}},
            plugin_snapshot={"plugins": {}},
            plugin_snapshot_revision=2**63 - 1,
            execution_state_ref=None,
            execution_state=bytes(range(256)),
        ),
        usage_deltas=[TokenLedgerEntry("turn", "mock-model", TokenUsage(11, 7, 3, 5))],
        turn_commit=RuntimeTurnCommitStamp("root", "turn-1", "h" * 64),
        completed_queue_claims=[
            QueuedWorkCompletion(
                session_id="root", claim_id="qwc:1:1", lease_token="tok", batch_ids=["b1", "b2"]
            )
        ],
        committed_attachment_ids=["att-1", "att-2"],
    )


def every_model_sample() -> list[Any]:
    lz = lease()
    rel = SessionRelation.child("parent", caused_by={"type": "turn", "turn_id": "t", "n": 2**63 - 1})
    full = HydratedSessionCheckpoint(
        tool_state=AWKWARD, plugin_snapshot={"plugins": {"p": [[], [[]]]}}, execution_state=b"\x00\xff"
    )
    manifest = SessionCheckpoint(
        turn_state=PersistedTurnState(turn_index=2), tool_state_ref="t" * 64, plugin_snapshot_revision=5
    )
    return [
        MergeKey.never(),
        MergeKey.payload_default(),
        MergeKey.group("g"),
        FullGraph(),
        ActivePath(),
        ActivePath("leaf"),
        SessionRelation.root(),
        SessionRelation.child("parent"),
        rel,
        node("n1"),
        node("n2", "n1"),
        SessionNodeRecord(
            node_id="n",
            agent_frame_id="f",
            caused_by={"type": "session_node", "id": "x"},
            timestamp="t",
            kind="plugin",
            plugin_type="memo",
            body=AWKWARD,
        ),
        SessionGraph(),
        SessionGraph([node("a"), node("b", "a")], "b"),
        GraphUnchanged(None),
        GraphUnchanged("leaf"),
        GraphAppend([node("c", "b")], "c"),
        GraphAppend([], None),
        GraphReplaceFull(SessionGraph()),
        GraphReplaceFull(SessionGraph([node("x")], "x")),
        PersistedSessionConfig("p", AWKWARD),
        TokenUsage(),
        TokenUsage(-1, 2**63 - 1, -(2**63), 4),
        TokenLedgerEntry("turn", "m", TokenUsage(1, 2, 3)),
        PersistedTurnState(),
        PersistedTurnState(
            turn_index=1, last_prompt_usage={"x": -0.0}, protocol_turn_options={"payload": None}
        ),
        HydratedSessionCheckpoint(),
        full,
        SessionCheckpoint(),
        manifest,
        SessionHeadMeta(config=PersistedSessionConfig("p", {})),
        SessionHeadMeta(
            session_id="s",
            head_revision=4,
            config=PersistedSessionConfig("p", {"id": "m"}),
            agent_frames=[AWKWARD],
            current_agent_frame_id="f",
            checkpoint_ref="c" * 64,
            leaf_node_id="leaf",
            graph_node_count=9,
            token_ledger=[TokenLedgerEntry("turn", "m", TokenUsage(1, 1, 1, 1))],
        ),
        PersistedSessionRead(
            session_id="s",
            head_revision=1,
            config=PersistedSessionConfig("p", {}),
            agent_frames=[{"frame_id": "f"}],
            current_agent_frame_id="f",
            graph=SessionGraph([node("a")], "a"),
            checkpoint_ref="c" * 64,
            checkpoint=full,
            token_ledger=[TokenLedgerEntry("turn", "m", TokenUsage(1))],
        ),
        PersistedSessionRead(session_id="s", head_revision=1, config=PersistedSessionConfig("p", None)),
        lz,
        lz.fence(),
        lz.completion(),
        QueuedWorkCompletion(session_id="root", claim_id="c", lease_token="t", batch_ids=[]),
        draft("root", "hello", EARLIEST, EXCL),
        draft("root", MB_TEXT, AFTER, JOIN, merge=MergeKey.group("g"), source="src", available=2**63 - 1),
        QueuedWorkBatchDraft(
            session_id="root", delivery_policy=EARLIEST, slot_policy=JOIN, payloads=[AWKWARD, None, [], {}]
        ),
        QueuedWorkItem(item_id="i", payload=AWKWARD),
        batch(),
        batch(items=0, source_key="k", merge_key=MergeKey.payload_default()),
        QueuedWorkClaim(
            session_id="root",
            claim_id="qwc:3:1",
            owner_id="o",
            lease_token="tok",
            fencing_token=1,
            claimed_at_epoch_ms=1,
            expires_at_epoch_ms=2,
            batches=[batch(), batch("qwb:" + "b" * 64, items=2)],
        ),
        RuntimeTurnCommitStamp("root", "turn", "h"),
        RuntimeCommitResult(1, "c" * 64, manifest),
        minimal("root"),
        rich_commit(),
        SessionMeta("root", "Conformance Root", "2026-06-02T00:00:00Z", "gpt-5.4-mini", "/srv/c", rel),
        SessionMeta("root", "n", "c", "m"),
        SessionPickerInfo(
            session_id="s",
            cwd=None,
            relation=rel,
            first_user_message="hello\n\n[Image attached]",
            user_message_count=2,
        ),
        AttachmentIntent("a", "root", "sha256:a", 100),
        AttachmentManifestEntry(
            attachment_id="a",
            session_id="root",
            canonical_uri="u",
            intent_at_epoch_ms=1,
            committed_at_epoch_ms=None,
        ),
        AttachmentManifestEntry(
            attachment_id="a",
            session_id="root",
            canonical_uri="u",
            intent_at_epoch_ms=1,
            committed_at_epoch_ms=5,
        ),
        GcReport(root_count=1, retained_blob_count=2, deleted_blob_count=3),
        VacuumReport(removed_node_count=4),
        SessionStoreCreateRequest("s", rel, "model", "provider", "/cwd"),
        SessionStoreCreateRequest("s", SessionRelation.root(), "model", "provider"),
    ]


# ---- turn_commit_hash (§2.4) -----------------------------------------------------------------------------


def hash_input(commit: RuntimeCommit) -> bytes:
    wire = commit.to_wire()
    wire["expected_head_revision"] = None
    wire["turn_commit"] = None
    wire.pop("session_execution_lease", None)
    wire.pop("release_session_execution_lease", None)
    return canonical(scrub_volatile(wire))


def test_hash_test_vectors() -> None:
    assert hash_input(minimal("root")).decode() == MINIMAL_ROOT_CANONICAL
    assert minimal("root").turn_commit_hash() == MINIMAL_ROOT_HASH
    assert minimal_commit("root", turn_index=1).turn_commit_hash() == MINIMAL_ROOT_TURN1_HASH


def test_hash_ignores_retry_noise() -> None:
    base = minimal("root").turn_commit_hash()
    lz = lease()
    stamp = RuntimeTurnCommitStamp("root", "t", base)
    for noisy in (
        minimal("root", expected_head_revision=1),
        minimal("root", expected_head_revision=2**63 - 1),
        leased(minimal("root"), lz),
        minimal("root").with_session_execution_lease(lz.fence()),
        minimal("root").with_turn_commit(stamp),
        minimal("root", graph=GraphReplaceFull(SessionGraph([], "some-leaf"))),
    ):
        assert noisy.turn_commit_hash() == base


def test_hash_ignores_node_ids_parents_timestamps_leaf_and_message_ids() -> None:
    a = minimal(
        "root",
        graph=GraphReplaceFull(
            SessionGraph(
                [message_node("n1", None, "m1", "p1", "hi"), message_node("n2", "n1", "m2", "p2", "yo")], "n2"
            )
        ),
    )
    b = minimal(
        "root",
        graph=GraphReplaceFull(
            SessionGraph(
                [message_node("x111", "zz", "other", "ids", "hi"), message_node("y", "x111", "q", "r", "yo")],
                None,
            )
        ),
    )
    assert a.turn_commit_hash() == b.turn_commit_hash()
    # Unchanged's leaf is volatile too.
    assert minimal("root", graph=GraphUnchanged("a")).turn_commit_hash() == (
        minimal("root", graph=GraphUnchanged(None)).turn_commit_hash()
    )


def test_hash_includes_meaning() -> None:
    base = minimal("root")
    frame = {"frame_id": "f", "created_at": "2026-01-01T00:00:00Z"}
    completion = QueuedWorkCompletion(session_id="root", claim_id="c", lease_token="t", batch_ids=["b"])
    variants = [
        minimal("other"),
        minimal("root", agent_frames=[frame]),
        minimal("root", agent_frames=[{**frame, "created_at": "2026-01-01T00:00:01Z"}]),
        minimal("root", current_agent_frame_id="f"),
        minimal(
            "root", config=PersistedSessionConfig("p", {"id": "", "limits": {"context_window_tokens": 1}})
        ),
        minimal("root", usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage())]),
        minimal("root", usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage(1))]),
        base.completing_queue_claim(completion),
        base.completing_queue_claim(completion.model_copy(update={"lease_token": "t:stale"})),
        base.with_committed_attachments(["a"]),
        base.with_committed_attachments(["b", "a"]),
        base.with_committed_attachments(["a", "b"]),
        minimal("root", tool_state={"generation": 1, "tools": {}}),
        minimal("root", plugin_snapshot={"plugins": {}}),
        minimal("root", plugin_snapshot_revision=1),
        minimal("root", execution_state=b"vm"),
        minimal("root", tool_state_ref="r"),
        minimal("root", graph=GraphUnchanged(None)),
        minimal("root", graph=GraphReplaceFull(SessionGraph([node("a")]))),
        minimal("root", graph=GraphReplaceFull(SessionGraph([node("a"), node("a")]))),
    ]
    hashes = {v.turn_commit_hash() for v in variants} | {base.turn_commit_hash()}
    assert len(hashes) == len(variants) + 1


def test_hash_does_not_mutate_the_commit() -> None:
    commit = rich_commit()
    before = commit.to_wire()
    snapshot = repr(before)
    commit.turn_commit_hash()
    assert repr(commit.to_wire()) == snapshot
    assert commit.graph.delta_leaf_node_id() == "n3"


def test_hash_is_stable_across_round_trip() -> None:
    commit = rich_commit()
    again = RuntimeCommit.from_wire(loads(canonical(commit.to_wire())))
    assert again.turn_commit_hash() == commit.turn_commit_hash()


# ---- wire forms and round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("model", every_model_sample(), ids=lambda m: type(m).__name__)
def test_wire_round_trip(model: Any) -> None:
    wire = model.to_wire()
    decoded = type(model).from_wire(loads(canonical(wire)))
    assert decoded == model
    assert type(decoded) is type(model)
    assert decoded.to_wire() == wire


def test_every_public_model_has_a_sample() -> None:
    from pydantic import BaseModel

    import sessionfence.models as models

    sampled = {type(m).__name__ for m in every_model_sample()}
    public_models = {
        name
        for name in models.__all__
        if isinstance(getattr(models, name), type) and issubclass(getattr(models, name), BaseModel)
    }
    assert public_models - sampled == set()


def test_opaque_values_survive_exactly() -> None:
    commit = rich_commit()
    decoded = RuntimeCommit.from_wire(loads(canonical(commit.to_wire())))
    tools = decoded.checkpoint.tool_state["tools"]["t"]
    assert tools == AWKWARD
    assert type(tools["max_i64"]) is int and tools["max_i64"] == 2**63 - 1
    assert tools["max_u64"] == 2**64 - 1
    assert math.copysign(1.0, tools["neg_zero"]) == -1.0
    assert tools["nul"] == "\u0000"
    assert tools["nested_empty"] == [[], [[]]]
    assert len(tools["big_text"]) == len(MB_TEXT)
    assert decoded.checkpoint.execution_state == bytes(range(256))
    assert decoded.agent_frames[0]["execution_state_snapshot"] == list(b"frame-vm")


def test_models_keep_opaque_values_uncoerced() -> None:
    payload = {"n": 1, "f": 1.0, "z": -0.0}
    item = QueuedWorkItem(item_id="i", payload=payload)
    assert item.payload is payload
    assert type(item.payload["n"]) is int and type(item.payload["f"]) is float


def test_enum_wire_strings() -> None:
    assert [t.to_wire() for t in DurabilityTier] == ["inline", "durable"]
    assert [d.value for d in DeliveryPolicy] == ["earliest_safe_boundary", "after_current_turn_commit"]
    assert [s.value for s in SlotPolicy] == ["join", "exclusive"]
    assert [b.value for b in QueuedWorkClaimBoundary] == ["active_turn_checkpoint", "idle"]
    assert SlotPolicy.from_wire("join") is SlotPolicy.JOIN
    assert str(DurabilityTier.DURABLE) == "durable"
    with pytest.raises(BackendError, match="SlotPolicy"):
        SlotPolicy.from_wire("both")


def test_enum_fields_accept_wire_strings() -> None:
    d = QueuedWorkBatchDraft(
        session_id="s", delivery_policy="earliest_safe_boundary", slot_policy="join", payloads=[]
    )
    assert d.delivery_policy is EARLIEST and d.slot_policy is JOIN


def test_merge_key_forms_and_equality() -> None:
    assert MergeKey.never().to_wire() == "never"
    assert MergeKey.payload_default().to_wire() == "payload_default"
    assert MergeKey.group("a").to_wire() == {"group": "a"}
    assert MergeKey.never() == MergeKey.never() == MergeKey(kind="never")
    assert MergeKey.group("a") == MergeKey.group("a") != MergeKey.group("b")
    assert MergeKey.group("a") != MergeKey.never()
    assert len({MergeKey.group("a"), MergeKey.group("a"), MergeKey.never()}) == 2
    assert MergeKey.from_wire({"group": "a"}) == MergeKey.group("a")
    with pytest.raises(ValidationError):
        MergeKey(kind="group")
    with pytest.raises(ValidationError):
        MergeKey(kind="never", label="x")
    for bad in ("always", {"group": 1}, {"group": "a", "x": 1}, None):
        with pytest.raises(BackendError, match="MergeKey"):
            MergeKey.from_wire(bad)


def test_relation_forms() -> None:
    assert SessionRelation.root().to_wire() == {"kind": "root"}
    assert SessionRelation.root().parent_session_id is None
    child = SessionRelation.child("p")
    assert child.to_wire() == {"kind": "child", "parent_session_id": "p"}
    assert child.parent_session_id == "p"
    caused = SessionRelation.child("p", {"type": "turn"})
    assert caused.to_wire() == {"kind": "child", "parent_session_id": "p", "caused_by": {"type": "turn"}}
    assert SessionRelation.from_wire({}) == SessionRelation.root()
    with pytest.raises(ValidationError):
        SessionRelation(kind="child")
    with pytest.raises(ValidationError):
        SessionRelation(kind="root", parent_session_id="p")
    with pytest.raises(BackendError, match="SessionRelation"):
        SessionRelation.from_wire({"kind": "sibling"})
    meta = SessionMeta("s", "n", "c", "m", None, caused)
    assert meta.parent_session_id == "p"
    info = SessionPickerInfo(session_id="s", relation=child)
    assert info.parent_session_id == "p"


def test_graph_delta_forms_and_leaf_accessor() -> None:
    n = node("a")
    assert GraphUnchanged(None).to_wire() == {"Unchanged": {"leaf_node_id": None}}
    assert GraphAppend([n], None).to_wire() == {"Append": {"nodes": [n.to_wire()], "leaf_node_id": None}}
    assert GraphReplaceFull(SessionGraph([n])).to_wire() == {"ReplaceFull": {"nodes": [n.to_wire()]}}
    assert GraphReplaceFull(SessionGraph([n], "a")).to_wire() == {
        "ReplaceFull": {"nodes": [n.to_wire()], "leaf_node_id": "a"}
    }
    for delta, leaf in [
        (GraphUnchanged("u"), "u"),
        (GraphAppend([n], "a"), "a"),
        (GraphReplaceFull(SessionGraph([n], "r")), "r"),
        (GraphReplaceFull(SessionGraph()), None),
    ]:
        assert delta.delta_leaf_node_id() == leaf
        assert delta.leaf_node_id == leaf
        assert graph_commit_delta_from_wire(delta.to_wire()) == delta
        assert isinstance(delta, GRAPH_COMMIT_DELTA_TYPES)
    for bad in ({}, {"Unchanged": {}, "Append": {}}, {"Rewrite": {}}, [], {"Append": {"leaf_node_id": None}}):
        with pytest.raises(BackendError, match="GraphCommitDelta"):
            graph_commit_delta_from_wire(bad)
    with pytest.raises(BackendError):
        GraphUnchanged.from_wire({"Append": {"nodes": [], "leaf_node_id": None}})


def test_commit_graph_union_validates_from_dicts() -> None:
    commit = minimal("root")
    dumped = commit.model_dump()
    assert RuntimeCommit.model_validate(dumped) == commit
    for graph in ({"leaf_node_id": "x"}, {"nodes": [node("a").model_dump()], "leaf_node_id": "a"}):
        rebuilt = RuntimeCommit.model_validate({**dumped, "graph": graph})
        assert isinstance(rebuilt.graph, GraphUnchanged | GraphAppend)


def test_node_record_keeps_every_extra_key() -> None:
    record = node("n1", "n0")
    assert record.kind == "event"  # type: ignore[attr-defined]
    assert record.model_extra == {
        "kind": "event",
        "event": {"Protocol": {"plugin_id": "conformance", "payload": {"node": "n1"}}},
    }
    wire = record.to_wire()
    assert wire == {
        "node_id": "n1",
        "parent_node_id": "n0",
        "timestamp": "1970-01-01T00:00:00Z",
        "kind": "event",
        "event": {"Protocol": {"plugin_id": "conformance", "payload": {"node": "n1"}}},
    }
    root = node("n0").to_wire()
    assert "parent_node_id" not in root and "caused_by" not in root and "agent_frame_id" not in root
    stored = {"node_id": "x", "timestamp": "t", "parent_node_id": None, "future_key": [1, {"a": -0.0}]}
    decoded = SessionNodeRecord.from_wire(stored)
    assert decoded.parent_node_id is None
    assert decoded.model_extra == {"future_key": [1, {"a": -0.0}]}
    for bad in (
        {"timestamp": "t"},
        {"node_id": 1, "timestamp": "t"},
        {"node_id": "x"},
        {"node_id": "x", "timestamp": "t", "parent_node_id": 5},
        "node",
    ):
        with pytest.raises(BackendError, match="SessionNodeRecord"):
            SessionNodeRecord.from_wire(bad)


def test_omit_if_none_rules() -> None:
    assert SessionGraph().to_wire() == {"nodes": []}
    assert SessionCheckpoint().to_wire() == {"turn_state": PersistedTurnState().to_wire()}
    assert PersistedTurnState().to_wire() == {
        "turn_index": 0,
        "token_usage": {
            "input_tokens": 0,
            "output_tokens": 0,
            "cached_input_tokens": 0,
            "reasoning_tokens": 0,
        },
        "protocol_turn_options": {"payload": {}},
    }
    hydrated = HydratedSessionCheckpoint(execution_state=b"\x01\x02").to_wire()
    assert hydrated["execution_state"] == [1, 2]
    assert set(hydrated) == {
        "turn_state",
        "tool_state_ref",
        "tool_state",
        "plugin_snapshot_ref",
        "plugin_snapshot",
        "plugin_snapshot_revision",
        "execution_state_ref",
        "execution_state",
    }
    head = SessionHeadMeta(config=PersistedSessionConfig("p", {})).to_wire()
    assert head == {
        "session_id": "root",
        "head_revision": 0,
        "config": {"provider_id": "p", "model": {}},
        "agent_frames": [],
        "graph_node_count": 0,
    }
    commit = minimal("root").to_wire()
    assert "session_execution_lease" not in commit and "release_session_execution_lease" not in commit
    assert commit["expected_head_revision"] is None and commit["turn_commit"] is None
    leased_wire = leased(minimal("root"), lease()).to_wire()
    assert leased_wire["session_execution_lease"] == lease().fence().to_wire()
    d = draft("root", "x", EARLIEST, EXCL).to_wire()
    assert "source_key" not in d and d["merge_key"] == "never"
    assert d["delivery_policy"] == "earliest_safe_boundary" and d["slot_policy"] == "exclusive"
    assert "source_key" not in batch().to_wire()
    meta = SessionMeta("s", "n", "c", "m").to_wire()
    assert meta["cwd"] is None and meta["relation"] == {"kind": "root"}
    entry = AttachmentManifestEntry(
        attachment_id="a", session_id="s", canonical_uri="u", intent_at_epoch_ms=1
    )
    assert entry.to_wire()["committed_at_epoch_ms"] is None


def test_decoding_defaults_follow_serde() -> None:
    head = SessionHeadMeta.from_wire({"config": {"provider_id": "p", "model": None}})
    assert head.session_id == "root" and head.head_revision == 0 and head.agent_frames == []
    assert head.current_agent_frame_id == "" and head.token_ledger == [] and head.graph_node_count == 0
    assert SessionCheckpoint.from_wire({}) == SessionCheckpoint()
    usage = TokenUsage.from_wire({"input_tokens": 1, "output_tokens": 2, "cached_input_tokens": 3})
    assert usage.reasoning_tokens == 0
    # Unknown keys (such as a stored schema_version) are ignored.
    assert VacuumReport.from_wire({"removed_node_count": 1, "schema_version": 1}) == VacuumReport(
        removed_node_count=1
    )


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (RuntimeCommit, {"session_id": "root"}),
        (RuntimeCommit, []),
        (SessionHeadMeta, {}),
        (SessionHeadMeta, {"config": {"provider_id": 1, "model": None}}),
        (QueuedWorkBatch, {**batch().to_wire(), "slot_policy": "both"}),
        (QueuedWorkBatch, {**batch().to_wire(), "enqueue_seq": "3"}),
        (QueuedWorkBatch, {**batch().to_wire(), "enqueue_seq": True}),
        (HydratedSessionCheckpoint, {"turn_state": {"turn_index": 0}, "execution_state": [256]}),
        (HydratedSessionCheckpoint, {"turn_state": {"turn_index": 0}, "execution_state": "abc"}),
        (HydratedSessionCheckpoint, {}),
        (SessionMeta, {"session_id": "s", "session_name": "n", "created_at": "c"}),
        (SessionExecutionLease, {"session_id": "s"}),
        (QueuedWorkCompletion, {"session_id": "s", "claim_id": "c", "lease_token": "t", "batch_ids": [1]}),
        (RuntimeCommitResult, {"head_revision": 1, "checkpoint_ref": None, "manifest": {}}),
        (AttachmentManifestEntry, {"attachment_id": "a", "session_id": "s", "canonical_uri": "u"}),
    ],
)
def test_from_wire_refuses_malformed_records_with_backend_error(cls: Any, obj: Any) -> None:
    with pytest.raises(BackendError, match="malformed"):
        cls.from_wire(obj)


# ---- construction ----------------------------------------------------------------------------------------


def test_construction_accepts_out_of_range_integers() -> None:
    for value in (-1, 2**63, 2**64, 2**200):
        commit = minimal(
            "root", expected_head_revision=value, turn_index=value, plugin_snapshot_revision=value
        )
        assert commit.expected_head_revision == value
        SessionExecutionLeaseFence(session_id="s", owner_id="o", lease_token="t", fencing_token=value)
        AttachmentIntent("a", "s", "u", value)
        draft("s", "x", EARLIEST, EXCL, available=value)
        TokenUsage(value, value, value, value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: minimal("root", expected_head_revision=True),
        lambda: minimal("root", expected_head_revision="1"),
        lambda: minimal("root", expected_head_revision=1.0),
        lambda: minimal("root", agent_frames=({"frame_id": "f"},)),
        lambda: minimal(None),  # type: ignore[arg-type]
        lambda: minimal("root", committed_attachment_ids="abc"),
        lambda: HydratedSessionCheckpoint(execution_state="bytes"),
        lambda: HydratedSessionCheckpoint(execution_state=bytearray(b"x")),
        lambda: TokenUsage(True),
        lambda: QueuedWorkBatchDraft(session_id="s", delivery_policy="soon", slot_policy=JOIN, payloads=[]),
        lambda: RuntimeTurnCommitStamp("s", "t", 5),
        lambda: SessionMeta("s", "n", "c", "m", None, "root"),
        lambda: minimal("root", surprise=1),
    ],
)
def test_construction_refuses_wrong_python_types(build: Any) -> None:
    with pytest.raises(ValidationError):
        build()


def test_positional_constructors() -> None:
    meta = SessionMeta(
        "root",
        "Conformance Root",
        "2026-06-02T00:00:00Z",
        "gpt-5.4-mini",
        "/srv/conformance",
        SessionRelation.root(),
    )
    assert (meta.session_id, meta.session_name, meta.created_at, meta.model, meta.cwd) == (
        "root",
        "Conformance Root",
        "2026-06-02T00:00:00Z",
        "gpt-5.4-mini",
        "/srv/conformance",
    )
    assert meta.relation == SessionRelation.root() and meta.parent_session_id is None
    assert meta == SessionMeta(
        session_id="root",
        session_name="Conformance Root",
        created_at="2026-06-02T00:00:00Z",
        model="gpt-5.4-mini",
        cwd="/srv/conformance",
        relation=SessionRelation.root(),
    )
    stamp = RuntimeTurnCommitStamp("root", "turn", "hash")
    assert (stamp.session_id, stamp.turn_id, stamp.turn_commit_hash) == ("root", "turn", "hash")
    intent = AttachmentIntent("reopen-attachment", "root", "sha256:reopen-attachment", 100)
    assert intent.intent_at_epoch_ms == 100 and intent.canonical_uri == "sha256:reopen-attachment"
    request = SessionStoreCreateRequest(
        "session-a", SessionRelation.child("parent-session"), "model-a", "prov"
    )
    assert request.cwd is None and request.relation.parent_session_id == "parent-session"
    assert TokenUsage(11, 7, 3, 5) == TokenUsage(
        input_tokens=11, output_tokens=7, cached_input_tokens=3, reasoning_tokens=5
    )
    entry = TokenLedgerEntry("turn", "mock-model", TokenUsage(1))
    assert entry.usage.input_tokens == 1 and entry.model == "mock-model"
    assert ActivePath("right-leaf").leaf_node_id == "right-leaf"
    assert ActivePath() == ActivePath(None) and FullGraph() == FullGraph()
    assert PersistedSessionConfig("p", {"id": "m"}).model == {"id": "m"}
    assert RuntimeCommitResult(1, "ref", SessionCheckpoint()).checkpoint_ref == "ref"


def test_token_usage_total_excludes_cached() -> None:
    assert TokenUsage(11, 7, 3, 5).total() == 23
    assert TokenUsage(0, 0, 5, 0).total() == 0
    assert TokenUsage(-1, 1).total() == 0


def test_lease_helpers() -> None:
    lz = lease("root", "owner-a", 4)
    fence, completion = lz.fence(), lz.completion()
    assert isinstance(fence, SessionExecutionLeaseFence) and isinstance(
        completion, SessionExecutionLeaseCompletion
    )
    expected = {
        "session_id": "root",
        "owner_id": "owner-a",
        "lease_token": "root:owner-a:1000:4",
        "fencing_token": 4,
    }
    assert fence.to_wire() == expected == completion.to_wire()
    assert SessionExecutionLeaseCompletion.from_lease(lz) == completion
    assert fence != completion  # different kinds, even with equal fields


def test_claim_helpers() -> None:
    claim = QueuedWorkClaim(
        session_id="root",
        claim_id="qwc:1:1",
        owner_id="o",
        lease_token="tok",
        fencing_token=1,
        claimed_at_epoch_ms=1,
        expires_at_epoch_ms=2,
        batches=[batch("b1", items=0), batch("b2", items=0)],
    )
    assert claim.completion() == QueuedWorkCompletion(
        session_id="root", claim_id="qwc:1:1", lease_token="tok", batch_ids=["b1", "b2"]
    )
    assert claim.is_empty()
    assert not claim.model_copy(update={"batches": [batch("b1", items=0), batch("b2", items=1)]}).is_empty()


def test_draft_defaults() -> None:
    d = QueuedWorkBatchDraft(session_id="s", delivery_policy=EARLIEST, slot_policy=EXCL, payloads=[])
    assert d.source_key is None and d.merge_key == MergeKey.never() and d.available_at_ms == 0


def test_builders_return_copies_and_leave_the_original_unchanged() -> None:
    original = minimal("root")
    snapshot = original.to_wire()
    lz = lease()
    completion = QueuedWorkCompletion(session_id="root", claim_id="c", lease_token="t", batch_ids=["b"])
    stamp = RuntimeTurnCommitStamp("root", "t", "h")

    stamped = original.with_turn_commit(stamp)
    fenced = original.with_session_execution_lease(lz.fence())
    releasing = original.releasing_session_execution_lease(lz.completion())
    one = original.completing_queue_claim(completion)
    two = one.completing_queue_claims([completion, completion])
    attached = original.with_committed_attachments(["a", "b"])
    replaced = attached.with_committed_attachments(iter(["c"]))

    assert original.to_wire() == snapshot
    assert stamped.turn_commit == stamp and original.turn_commit is None
    assert fenced.session_execution_lease == lz.fence() and original.session_execution_lease is None
    assert releasing.release_session_execution_lease == lz.completion()
    assert original.release_session_execution_lease is None
    assert one.completed_queue_claims == [completion] and original.completed_queue_claims == []
    assert len(two.completed_queue_claims) == 3 and len(one.completed_queue_claims) == 1
    assert attached.committed_attachment_ids == ["a", "b"] and replaced.committed_attachment_ids == ["c"]
    assert original.committed_attachment_ids == []
    chained = leased(original, lz)
    assert chained.session_execution_lease == lz.fence()
    assert chained.release_session_execution_lease == lz.completion()


def test_minimal_builder_shortcuts() -> None:
    c = minimal(
        "root",
        turn_index=41,
        tool_state={"generation": 9, "tools": {}},
        plugin_snapshot={"plugins": {}},
        plugin_snapshot_revision=12,
        execution_state=b"frame-vm",
        expected_head_revision=3,
    )
    assert c.checkpoint.turn_state.turn_index == 41
    assert c.checkpoint.tool_state == {"generation": 9, "tools": {}}
    assert c.checkpoint.plugin_snapshot_revision == 12 and c.checkpoint.execution_state == b"frame-vm"
    assert c.expected_head_revision == 3
    assert minimal("root").checkpoint == HydratedSessionCheckpoint()
    d = draft("root", "first", EARLIEST, JOIN, source="source:first")
    assert d.source_key == "source:first" and d.payloads == [turn_input("first")]
    b = batch(items=1)
    assert text(b) == "t0"
