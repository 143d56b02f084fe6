"""Pure tests of sessionfence.validation: what is refused before any I/O (contract §0, §2.3 step 0, S35)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import draft, leased, minimal, node

from sessionfence import validation as v
from sessionfence.errors import InvalidRequest
from sessionfence.models import (
    ActivePath,
    AttachmentIntent,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    MergeKey,
    QueuedWorkBatch,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    QueuedWorkItem,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    SessionExecutionLeaseFence,
    SessionGraph,
    SessionMeta,
    SessionNodeRecord,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
)

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE
MB = 1024 * 1024
NAN = float("nan")


def lease(session_id: str = "root", owner: str = "owner", fencing: int = 1) -> SessionExecutionLease:
    return SessionExecutionLease(
        session_id=session_id,
        owner_id=owner,
        lease_token=f"{session_id}:{owner}:0:{fencing}",
        fencing_token=fencing,
        claimed_at_epoch_ms=0,
        expires_at_epoch_ms=60_000,
    )


def refused(match: str | None = None) -> Any:
    return pytest.raises(InvalidRequest, match=match)


# ---- scalars ---------------------------------------------------------------------------------------------


def test_invalid_request_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        v.check_u63("lease_ttl_ms", -1)


@pytest.mark.parametrize("value", [0, 1, 60_000, v.MAX_U63])
def test_u63_accepts(value: int) -> None:
    v.check_u63("x", value)


@pytest.mark.parametrize("value", [-1, 2**63, 2**64, True, False, 1.0, "1", None])
def test_u63_refuses(value: Any) -> None:
    with refused("lease_ttl_ms must be an integer in 0..9223372036854775807"):
        v.check_u63("lease_ttl_ms", value)


def test_i64_range_and_sign() -> None:
    for ok in (-(2**63), -1, 0, 2**63 - 1):
        v.check_i64("usage", ok)
    for bad in (2**63, -(2**63) - 1, True, 1.5):
        with refused("usage"):
            v.check_i64("usage", bad)


def test_opt_u63() -> None:
    v.check_opt_u63("x", None)
    with refused():
        v.check_opt_u63("x", -1)


@pytest.mark.parametrize("value", ["a", "\u0000", "é", "x" * v.MAX_ID_BYTES, "é" * (v.MAX_ID_BYTES // 2)])
def test_id_accepts(value: str) -> None:
    v.check_id("session_id", value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must not be empty"),
        ("x" * MB, "oversized"),
        ("x" * (v.MAX_ID_BYTES + 1), "oversized"),
        ("é" * (v.MAX_ID_BYTES // 2 + 1), "oversized"),
        ("\ud800", "surrogate"),
        (None, "must be a str"),
        (b"root", "must be a str"),
        (5, "must be a str"),
    ],
)
def test_id_refuses(value: Any, reason: str) -> None:
    with refused(f"owner_id .*{reason}|owner_id {reason}|{reason}") as info:
        v.check_id("owner_id", value)
    assert "owner_id" in str(info.value)


def test_lookup_ids_may_be_empty_but_not_oversized() -> None:
    v.check_lookup_id("batch_id", "")
    with refused("oversized"):
        v.check_lookup_id("batch_id", "x" * MB)


def test_str_list() -> None:
    v.check_str_list("ids", ["a", ""])
    v.check_str_list("ids", ("a",))
    for bad in ("abc", b"abc", None, ["a", 1], {"a"}):
        with refused("ids"):
            v.check_str_list("ids", bad)


# ---- commits ---------------------------------------------------------------------------------------------


def full_commit(**changes: Any) -> Any:
    lz = lease()
    commit = leased(
        minimal(
            "root",
            expected_head_revision=v.MAX_U63,
            turn_index=v.MAX_U63,
            plugin_snapshot_revision=v.MAX_U63,
            tool_state={"generation": 2**64 - 1, "tools": {"t": [[], [[]]], "z": -0.0, "nul": "\u0000"}},
            plugin_snapshot={"plugins": {}},
            execution_state=b"\x00vm",
            agent_frames=[{"frame_id": "f", "snapshot": list(b"vm")}],
            current_agent_frame_id="",
            usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage(-5, 2**63 - 1, -(2**63), 0))],
            graph=GraphReplaceFull(SessionGraph([node("a"), node("b", "a")], "b")),
            committed_attachment_ids=["att", ""],
        ),
        lz,
    )
    commit = commit.with_turn_commit(RuntimeTurnCommitStamp("root", "turn", "h")).completing_queue_claim(
        QueuedWorkCompletion(session_id="root", claim_id="c", lease_token="t", batch_ids=["b"])
    )
    return commit.model_copy(update=changes) if changes else commit


def test_valid_commits_pass() -> None:
    v.check_commit(minimal("root"))
    v.check_commit(full_commit())
    v.check_commit(minimal("root", expected_head_revision=0))
    v.check_commit(minimal("root", graph=GraphUnchanged(None)))
    v.check_commit(minimal("root", graph=GraphAppend([node("c", "b")], "c")))
    v.check_commit(
        minimal("root", checkpoint=minimal("root").checkpoint.model_copy(update={"tool_state_ref": "x"}))
    )


@pytest.mark.parametrize(
    ("commit", "field"),
    [
        (lambda: minimal("root", expected_head_revision=2**63), "commit.expected_head_revision"),
        (lambda: minimal("root", expected_head_revision=-1), "commit.expected_head_revision"),
        (lambda: minimal(""), "commit.session_id"),
        (lambda: minimal("x" * MB), "commit.session_id"),
        (lambda: minimal("root", turn_index=-1), "commit.checkpoint.turn_state.turn_index"),
        (lambda: minimal("root", turn_index=2**63), "commit.checkpoint.turn_state.turn_index"),
        (lambda: minimal("root", plugin_snapshot_revision=-1), "commit.checkpoint.plugin_snapshot_revision"),
        (
            lambda: minimal("root", plugin_snapshot_revision=2**63),
            "commit.checkpoint.plugin_snapshot_revision",
        ),
        (lambda: minimal("root", tool_state={"x": NAN}), "commit.checkpoint.tool_state"),
        (lambda: minimal("root", tool_state={"x": float("inf")}), "commit.checkpoint.tool_state"),
        (lambda: minimal("root", plugin_snapshot={"n": 2**64}), "commit.checkpoint.plugin_snapshot"),
        (lambda: minimal("root", plugin_snapshot={"t": (1, 2)}), "commit.checkpoint.plugin_snapshot"),
        (
            lambda: minimal("root", last_prompt_usage={"x": NAN}),
            "commit.checkpoint.turn_state.last_prompt_usage",
        ),
        (
            lambda: minimal("root", protocol_turn_options={"payload": {1: 2}}),
            "commit.checkpoint.turn_state.protocol_turn_options",
        ),
        (lambda: minimal("root", agent_frames=[{"f": NAN}]), "commit.agent_frames"),
        (lambda: minimal("root", agent_frames=[{"nested": [(1,)]}]), "commit.agent_frames"),
        (lambda: minimal("root").model_copy(update={"agent_frames": ({"f": 1},)}), "commit.agent_frames"),
        (
            lambda: minimal("root").model_copy(update={"current_agent_frame_id": None}),
            "commit.current_agent_frame_id",
        ),
        (
            lambda: minimal("root").model_copy(
                update={"config": minimal("root").config.model_copy(update={"model": NAN})}
            ),
            "commit.config.model",
        ),
        (
            lambda: minimal("root", usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage(2**63))]),
            "commit.usage_deltas[0].usage.input_tokens",
        ),
        (
            lambda: minimal(
                "root", usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage(0, 0, 0, -(2**63) - 1))]
            ),
            "commit.usage_deltas[0].usage.reasoning_tokens",
        ),
        (
            lambda: minimal("root", turn_commit=RuntimeTurnCommitStamp("root", "", "h")),
            "commit.turn_commit.turn_id",
        ),
        (
            lambda: minimal("root", turn_commit=RuntimeTurnCommitStamp("", "t", "h")),
            "commit.turn_commit.session_id",
        ),
        (
            lambda: minimal("root").with_session_execution_lease(
                SessionExecutionLeaseFence(session_id="root", owner_id="o", lease_token="t", fencing_token=-1)
            ),
            "commit.session_execution_lease.fencing_token",
        ),
        (
            lambda: minimal("root").releasing_session_execution_lease(lease(fencing=2**63).completion()),
            "commit.release_session_execution_lease.fencing_token",
        ),
        (
            lambda: minimal("root").completing_queue_claim(
                QueuedWorkCompletion(session_id="root", claim_id="c", lease_token="t", batch_ids=["x" * MB])
            ),
            "commit.completed_queue_claims[0].batch_ids[0]",
        ),
        (
            lambda: minimal("root").model_copy(update={"committed_attachment_ids": [1]}),
            "commit.committed_attachment_ids[0]",
        ),
        (
            lambda: minimal("root").model_copy(update={"committed_attachment_ids": "abc"}),
            "commit.committed_attachment_ids",
        ),
        (
            lambda: minimal("root", execution_state=None).model_copy(
                update={"checkpoint": minimal("root").checkpoint.model_copy(update={"execution_state": "vm"})}
            ),
            "commit.checkpoint.execution_state",
        ),
        (lambda: minimal("root").model_copy(update={"graph": {"leaf_node_id": None}}), "commit.graph"),
        (
            lambda: minimal("root").model_copy(update={"expected_head_revision": True}),
            "expected_head_revision",
        ),
    ],
)
def test_commit_refusals_name_the_field(commit: Any, field: str) -> None:
    with refused() as info:
        v.check_commit(commit())
    assert field in str(info.value)


def test_duplicate_node_ids_within_one_delta_are_refused() -> None:
    with refused("node id 'C' appears more than once"):
        v.check_commit(minimal("root", graph=GraphAppend([node("C"), node("C")], "C")))
    with refused("commit.graph.graph.nodes"):
        v.check_commit(
            minimal("root", graph=GraphReplaceFull(SessionGraph([node("a"), node("b"), node("a")])))
        )
    # The same id in a parent link is not a duplicate.
    v.check_commit(minimal("root", graph=GraphAppend([node("a"), node("b", "a")], "b")))


def test_node_fields_are_checked() -> None:
    for bad, field in [
        (node(""), "node_id"),
        (node("x" * MB), "node_id"),
        (SessionNodeRecord(node_id="n", timestamp="t", body={"x": NAN}), "not finite"),
        (SessionNodeRecord(node_id="n", timestamp="t", body=(1,)), "tuple"),
        (SessionNodeRecord(node_id="n", timestamp="t", caused_by={"x": 2**64}), "caused_by"),
        (node("n").model_copy(update={"parent_node_id": 5}), "parent_node_id"),
        (node("n").model_copy(update={"timestamp": None}), "timestamp"),
    ]:
        with refused() as info:
            v.check_commit(minimal("root", graph=GraphAppend([node("ok"), bad], None)))
        assert field in str(info.value)
        assert "commit.graph.nodes[1]" in str(info.value)


def test_empty_leaf_and_frame_ids_are_allowed() -> None:
    v.check_commit(minimal("root", graph=GraphUnchanged(""), current_agent_frame_id=""))


# ---- leases, drafts, claims, meta, intents ---------------------------------------------------------------


def test_lease_fence_and_completion() -> None:
    lz = lease()
    v.check_lease_fence(lz.fence())
    v.check_lease_fence(lz.completion())
    # Fence fields are lookups: an empty owner or token matches nothing, which the store reports as expired.
    v.check_lease_fence(
        SessionExecutionLeaseFence(session_id="", owner_id="", lease_token="", fencing_token=0)
    )
    with refused("fence.fencing_token"):
        v.check_lease_fence(lease(fencing=-1).fence())
    with refused("fence.owner_id"):
        v.check_lease_fence(lz.fence().model_copy(update={"owner_id": None}))
    with refused("fence must be"):
        v.check_lease_fence(lz)  # type: ignore[arg-type]


def test_drafts() -> None:
    v.check_draft(draft("root", "x", EARLIEST, EXCL))
    v.check_draft(
        draft("root", "x" * MB, EARLIEST, EXCL, merge=MergeKey.group(""), source="", available=v.MAX_U63)
    )
    v.check_draft(draft("root", "x", EARLIEST, EXCL).model_copy(update={"payloads": []}))
    for bad, field in [
        (draft("", "x", EARLIEST, EXCL), "draft.session_id"),
        (draft("root", "x", EARLIEST, EXCL, available=-1), "draft.available_at_ms"),
        (draft("root", "x", EARLIEST, EXCL, available=2**63), "draft.available_at_ms"),
        (draft("root", "x", EARLIEST, EXCL).model_copy(update={"payloads": [{"x": NAN}]}), "draft.payloads"),
        (draft("root", "x", EARLIEST, EXCL).model_copy(update={"payloads": ({"x": 1},)}), "draft.payloads"),
        (draft("root", "x", EARLIEST, EXCL).model_copy(update={"payloads": [(1,)]}), "draft.payloads"),
        (draft("root", "x", EARLIEST, EXCL, source="s" * MB), "draft.source_key"),
        (draft("root", "x", EARLIEST, EXCL).model_copy(update={"slot_policy": "join"}), "draft.slot_policy"),
        (draft("root", "x", EARLIEST, EXCL).model_copy(update={"merge_key": "never"}), "draft.merge_key"),
    ]:
        with refused() as info:
            v.check_draft(bad)
        assert field in str(info.value)


def test_claims() -> None:
    item = QueuedWorkItem(item_id="b:item:0", payload={})
    claimed = QueuedWorkBatch(
        batch_id="b",
        session_id="root",
        enqueue_seq=1,
        delivery_policy=EARLIEST,
        slot_policy=EXCL,
        available_at_ms=0,
        enqueued_at_ms=0,
        items=[item],
    )
    claim = QueuedWorkClaim(
        session_id="root",
        claim_id="qwc:1:1",
        owner_id="o",
        lease_token="t",
        fencing_token=1,
        claimed_at_epoch_ms=0,
        expires_at_epoch_ms=v.MAX_U63,
        batches=[claimed],
    )
    v.check_claim(claim)
    for update, field in [
        ({"fencing_token": -1}, "claim.fencing_token"),
        ({"expires_at_epoch_ms": 2**63}, "claim.expires_at_epoch_ms"),
        ({"claim_id": "c" * MB}, "claim.claim_id"),
        ({"batches": [claimed.model_copy(update={"batch_id": 1})]}, "claim.batches[0].batch_id"),
        ({"batches": ("b",)}, "claim.batches"),
    ]:
        with refused() as info:
            v.check_claim(claim.model_copy(update=update))
        assert field in str(info.value)


def test_meta() -> None:
    v.check_meta(
        SessionMeta("root", "Conformance Root", "2026-06-02T00:00:00Z", "gpt", "/srv", SessionRelation.root())
    )
    v.check_meta(SessionMeta("s", "", "", "", None, SessionRelation.child("p", {"type": "turn"})))
    for bad, field in [
        (SessionMeta("", "n", "c", "m"), "meta.session_id"),
        (SessionMeta("x" * MB, "n", "c", "m"), "meta.session_id"),
        (
            SessionMeta("s", "n", "c", "m", None, SessionRelation.child("p", {"x": NAN})),
            "meta.relation.caused_by",
        ),
        (SessionMeta("s", "n", "c", "m").model_copy(update={"cwd": 5}), "meta.cwd"),
        (SessionMeta("s", "n", "c", "m").model_copy(update={"relation": "root"}), "meta.relation"),
    ]:
        with refused() as info:
            v.check_meta(bad)
        assert field in str(info.value)


def test_intents() -> None:
    v.check_intent(AttachmentIntent("a", "root", "sha256:a", 0))
    v.check_intent(AttachmentIntent("a", "root", "", v.MAX_U63))
    for bad, field in [
        (AttachmentIntent("", "root", "u", 1), "intent.attachment_id"),
        (AttachmentIntent("a", "", "u", 1), "intent.session_id"),
        (AttachmentIntent("a", "root", "u", -1), "intent.intent_at_epoch_ms"),
        (AttachmentIntent("a" * MB, "root", "u", 1), "intent.attachment_id"),
    ]:
        with refused() as info:
            v.check_intent(bad)
        assert field in str(info.value)


def test_create_request_and_scope() -> None:
    v.check_create_request(SessionStoreCreateRequest("s", SessionRelation.root(), "m", "p"))
    with refused("request.session_id"):
        v.check_create_request(SessionStoreCreateRequest("", SessionRelation.root(), "m", "p"))
    v.check_read_scope(FullGraph())
    v.check_read_scope(ActivePath("leaf"))
    v.check_read_scope(ActivePath())
    with refused("scope"):
        v.check_read_scope("FullGraph")  # type: ignore[arg-type]
