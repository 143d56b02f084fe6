"""Bad input (contract §0, §2.3 step 0, S35): every refusal is an `InvalidRequest` (also a `ValueError`)
raised before any I/O, so a populated namespace is byte-for-byte unchanged and an empty one stays empty.

Each case is a call that would otherwise be valid against a populated namespace (a live fence, existing
nodes), so a missing check would show up as a write.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from builders import draft, minimal, node
from redisbed import Backend, dump_keys

from sessionfence import (
    ActivePath,
    AsyncRedisStore,
    AttachmentIntent,
    BackendError,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    InvalidRequest,
    QueuedWorkClaimBoundary,
    RuntimeTurnCommitStamp,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseExpired,
    SessionExecutionLeaseFence,
    SessionGraph,
    SessionMeta,
    SessionNodeRecord,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
)

MB = "x" * (1024 * 1024)
U63 = 2**63
EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE
IDLE = QueuedWorkClaimBoundary.IDLE


NOT_JSON: dict[str, Any] = {
    "set": {1, 2},
    "bytes": b"raw",
    "nan": math.nan,
    "inf": math.inf,
    "object": object(),
    "int key": {1: "one"},
    "nested set": {"ok": [1, {"bad": {3}}]},
    "lone surrogate": "\ud800",
}


@dataclass
class Ctx:
    store: AsyncRedisStore
    fence: SessionExecutionLeaseFence


Case = Callable[[Ctx], Awaitable[Any]]


def fence_with(ctx: Ctx, **update: Any) -> SessionExecutionLeaseFence:
    return ctx.fence.model_copy(update=update)


def commit(ctx: Ctx, **changes: Any) -> Awaitable[Any]:
    """A commit that would apply (live fence, fresh node ids) but for ``changes``."""
    return ctx.store.commit_runtime_state(minimal("root", **changes).with_session_execution_lease(ctx.fence))


def commit_copy(ctx: Ctx, **update: Any) -> Awaitable[Any]:
    """Like `commit`, but bypasses pydantic (model_copy) to smuggle in wrong types."""
    base = minimal("root").with_session_execution_lease(ctx.fence)
    return ctx.store.commit_runtime_state(base.model_copy(update=update))


def plugin_node(node_id: str, body: Any) -> SessionNodeRecord:
    return SessionNodeRecord(node_id=node_id, timestamp="t", kind="plugin", plugin_type="p", body=body)


def stamp(turn_id: str, session_id: str = "root") -> RuntimeTurnCommitStamp:
    return RuntimeTurnCommitStamp(session_id, turn_id, "h" * 64)


CASES: dict[str, Case] = {
    # ids: empty and 1 MB
    "claim session empty": lambda c: c.store.try_claim_session_execution_lease("", "w", 100),
    "claim session 1MB": lambda c: c.store.try_claim_session_execution_lease(MB, "w", 100),
    "claim owner empty": lambda c: c.store.try_claim_session_execution_lease("fresh", "", 100),
    "claim owner 1MB": lambda c: c.store.try_claim_session_execution_lease("fresh", MB, 100),
    "claim session surrogate": lambda c: c.store.try_claim_session_execution_lease("\udcff", "w", 100),
    "commit session empty": lambda c: c.store.commit_runtime_state(
        minimal("").with_session_execution_lease(c.fence)
    ),
    "commit session 1MB": lambda c: c.store.commit_runtime_state(
        minimal(MB).with_session_execution_lease(c.fence)
    ),
    "commit turn id empty": lambda c: commit(c, turn_commit=stamp("")),
    "commit turn id 1MB": lambda c: commit(c, turn_commit=stamp(MB)),
    "commit stamp session empty": lambda c: commit(c, turn_commit=stamp("t", "")),
    "commit node id empty": lambda c: commit(c, graph=GraphAppend([node("")], None)),
    "commit node id 1MB": lambda c: commit(c, graph=GraphAppend([node(MB)], None)),
    "commit fence owner 1MB": lambda c: c.store.commit_runtime_state(
        minimal("root").with_session_execution_lease(fence_with(c, owner_id=MB))
    ),
    "renew token 1MB": lambda c: c.store.renew_session_execution_lease(fence_with(c, lease_token=MB), 100),
    "release owner 1MB": lambda c: c.store.release_session_execution_lease(
        SessionExecutionLeaseCompletion(**fence_with(c, owner_id=MB).model_dump())
    ),
    "enqueue session empty": lambda c: c.store.enqueue_queued_work(draft("", "q", EARLIEST, EXCL)),
    "enqueue session 1MB": lambda c: c.store.enqueue_queued_work(draft(MB, "q", EARLIEST, EXCL)),
    "meta session empty": lambda c: c.store.save_session_meta(SessionMeta("", "n", "t", "m")),
    "intent id empty": lambda c: c.store.record_intent(AttachmentIntent("", "root", "uri", 1)),
    "intent session 1MB": lambda c: c.store.record_intent(AttachmentIntent("a", MB, "uri", 1)),
    "claim queue owner empty": lambda c: c.store.claim_ready_queued_work("root", c.fence, "", IDLE, 100, 1),
    # TTLs and revisions: negative and 2**63
    "claim ttl -1": lambda c: c.store.try_claim_session_execution_lease("fresh", "w", -1),
    "claim ttl 2**63": lambda c: c.store.try_claim_session_execution_lease("fresh", "w", U63),
    "claim ttl bool": lambda c: c.store.try_claim_session_execution_lease("fresh", "w", True),
    "claim ttl float": lambda c: c.store.try_claim_session_execution_lease("fresh", "w", 100.0),
    "renew ttl -1": lambda c: c.store.renew_session_execution_lease(c.fence, -1),
    "renew ttl 2**63": lambda c: c.store.renew_session_execution_lease(c.fence, U63),
    "queue claim ttl 2**63": lambda c: c.store.claim_ready_queued_work("root", c.fence, "w", IDLE, U63, 1),
    "queue claim max -1": lambda c: c.store.claim_ready_queued_work("root", c.fence, "w", IDLE, 100, -1),
    "queue claim max 2**63": lambda c: c.store.claim_ready_queued_work("root", c.fence, "w", IDLE, 100, U63),
    "expected -1": lambda c: commit(c, expected_head_revision=-1),
    "expected 2**63": lambda c: commit(c, expected_head_revision=U63),
    "expected 2**64": lambda c: commit(c, expected_head_revision=2**64),
    "expected bool": lambda c: commit_copy(c, expected_head_revision=True),
    # other contract integers past 2**63-1
    "turn_index 2**63": lambda c: commit(c, turn_index=U63),
    "turn_index -1": lambda c: commit(c, turn_index=-1),
    "plugin revision 2**63": lambda c: commit(c, plugin_snapshot_revision=U63),
    "plugin revision -1": lambda c: commit(c, plugin_snapshot_revision=-1),
    "fence fencing 2**63": lambda c: c.store.commit_runtime_state(
        minimal("root").with_session_execution_lease(fence_with(c, fencing_token=U63))
    ),
    "fence fencing -1": lambda c: c.store.renew_session_execution_lease(fence_with(c, fencing_token=-1), 100),
    "release fencing 2**63": lambda c: c.store.release_session_execution_lease(
        SessionExecutionLeaseCompletion(**fence_with(c, fencing_token=U63).model_dump())
    ),
    "usage past i64": lambda c: commit(
        c, usage_deltas=[TokenLedgerEntry("s", "m", TokenUsage(U63, 0, 0, 0))]
    ),
    "usage below i64": lambda c: commit(
        c, usage_deltas=[TokenLedgerEntry("s", "m", TokenUsage(0, -(2**63) - 1, 0, 0))]
    ),
    "token usage in turn state past i64": lambda c: commit(c, token_usage=TokenUsage(0, 0, U63, 0)),
    "available_at 2**63": lambda c: c.store.enqueue_queued_work(
        draft("root", "q", EARLIEST, EXCL, available=U63)
    ),
    "intent time 2**63": lambda c: c.store.record_intent(AttachmentIntent("a", "root", "uri", U63)),
    "list_uncommitted 2**63": lambda c: c.store.list_uncommitted(U63),
    "list_uncommitted -1": lambda c: c.store.list_uncommitted(-1),
    # wrong types smuggled past pydantic
    "commit session int": lambda c: commit_copy(c, session_id=5),
    "commit frames not a list": lambda c: commit_copy(c, agent_frames={"frame": 1}),
    "commit graph not a delta": lambda c: commit_copy(c, graph={"Unchanged": {"leaf_node_id": None}}),
    "commit attachment ids str": lambda c: commit_copy(c, committed_attachment_ids="abc"),
    "execution state not bytes": lambda c: commit(c, execution_state=bytearray(b"vm")),
    "load_node int": lambda c: c.store.load_node(5),  # type: ignore[arg-type]
    "load_session bad scope": lambda c: c.store.load_session("full"),  # type: ignore[arg-type]
    # duplicate node ids within one delta
    "append duplicate ids": lambda c: commit(c, graph=GraphAppend([node("C"), node("C")], "C")),
    "replace duplicate ids": lambda c: commit(
        c, graph=GraphReplaceFull(SessionGraph([node("D"), node("E", "D"), node("D")], "E"))
    ),
}
# payloads that are not JSON, in every opaque slot
for label, bad in NOT_JSON.items():
    CASES[f"tool_state {label}"] = lambda c, bad=bad: commit(c, tool_state={"generation": 1, "tools": bad})
    CASES[f"plugin_snapshot {label}"] = lambda c, bad=bad: commit(c, plugin_snapshot={"plugins": bad})
    CASES[f"agent frame {label}"] = lambda c, bad=bad: commit(c, agent_frames=[{"frame_id": "f", "x": bad}])
    CASES[f"model spec {label}"] = lambda c, bad=bad: commit_copy(
        c, config=minimal("root").config.model_copy(update={"model": {"id": "m", "extra": bad}})
    )
    CASES[f"node body {label}"] = lambda c, bad=bad: commit(
        c, graph=GraphAppend([plugin_node("nb", bad)], "nb")
    )
    CASES[f"protocol options {label}"] = lambda c, bad=bad: commit(c, protocol_turn_options={"payload": bad})
    CASES[f"queued payload {label}"] = lambda c, bad=bad: c.store.enqueue_queued_work(
        draft("root", "q", EARLIEST, EXCL).model_copy(update={"payloads": [{"type": "x", "v": bad}]})
    )


async def populate(store: AsyncRedisStore) -> SessionExecutionLeaseFence:
    """A namespace holding a head, nodes, meta, a queued batch and an intent; returns a live fence."""
    held = await store.try_claim_session_execution_lease("root", "holder", 600_000)
    assert held is not None
    await store.commit_runtime_state(
        minimal(
            "root", graph=GraphReplaceFull(SessionGraph([node("A"), node("B", "A")], "B"))
        ).with_session_execution_lease(held.fence())
    )
    await store.save_session_meta(SessionMeta("root", "n", "t", "m"))
    await store.enqueue_queued_work(draft("root", "q", EARLIEST, EXCL))
    await store.record_intent(AttachmentIntent("att", "root", "uri", 1))
    return held.fence()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_bad_input_is_refused_before_any_write(
    case: str, backend: Backend, namespace: str, key_prefix: str
) -> None:
    client = backend.sync_client()
    # A populated namespace: byte-for-byte unchanged.
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    fence = await populate(store)
    before = dump_keys(client, f"{key_prefix}:*")
    with pytest.raises(InvalidRequest) as info:
        await CASES[case](Ctx(store, fence))
    assert isinstance(info.value, ValueError)
    assert dump_keys(client, f"{key_prefix}:*") == before
    # An empty namespace (its own prefix): still zero keys.
    empty_prefix = key_prefix + "e"
    empty = AsyncRedisStore(backend.async_client(), namespace, key_prefix=empty_prefix)
    with pytest.raises(InvalidRequest):
        await CASES[case](Ctx(empty, fence))
    assert list(client.scan_iter(match=f"{empty_prefix}:*")) == []


@pytest.mark.parametrize("bad_now", [-1, 2**53, 1.5, "1000", True], ids=str)
async def test_injected_clock_out_of_range_is_invalid(
    bad_now: Any, backend: Backend, namespace: str, key_prefix: str
) -> None:
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix, clock=lambda: bad_now)
    with pytest.raises(InvalidRequest):
        await store.try_claim_session_execution_lease("root", "w", 100)
    assert list(backend.sync_client().scan_iter(match=f"{key_prefix}:*")) == []


async def test_limits_are_inclusive_and_expiry_saturates(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    """The largest valid values are accepted: 2**63-1 is a contract integer, and now + ttl saturates."""
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    held = await store.try_claim_session_execution_lease("root", "w", 2**63 - 1)
    assert held is not None
    assert held.expires_at_epoch_ms == 2**53 - 1
    renewed = await store.renew_session_execution_lease(held.fence(), 2**63 - 1)
    assert renewed.expires_at_epoch_ms == 2**53 - 1
    usage = TokenUsage(2**62, -(2**62), 5, 2**62)
    big = minimal(
        "root",
        turn_index=2**63 - 1,
        plugin_snapshot_revision=2**63 - 1,
        usage_deltas=[TokenLedgerEntry("s", "m", usage)],
    )
    result = await store.commit_runtime_state(big.with_session_execution_lease(held.fence()))
    assert result.head_revision == 1
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert read.checkpoint.turn_state.turn_index == 2**63 - 1
    assert read.checkpoint.plugin_snapshot_revision == 2**63 - 1
    assert read.token_ledger == [TokenLedgerEntry("s", "m", usage)]
    with pytest.raises(Exception) as info:  # a wrong revision at the top of the range is a plain conflict
        await store.commit_runtime_state(
            minimal("root", expected_head_revision=2**63 - 1).with_session_execution_lease(held.fence())
        )
    assert type(info.value).__name__ == "HeadRevisionConflict"
    assert info.value.expected == 2**63 - 1  # type: ignore[attr-defined]


async def test_empty_lookup_ids_match_nothing(backend: Backend, namespace: str, key_prefix: str) -> None:
    """Ids that are only looked up may be empty (§0): they match nothing and change nothing."""
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    fence = await populate(store)
    client = backend.sync_client()
    before = dump_keys(client, f"{key_prefix}:*")
    assert await store.load_node("") is None
    empty_fence = SessionExecutionLeaseFence(session_id="root", owner_id="", lease_token="", fencing_token=0)
    await store.release_session_execution_lease(SessionExecutionLeaseCompletion(**empty_fence.model_dump()))
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.renew_session_execution_lease(empty_fence, 100)
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.commit_runtime_state(minimal("root").with_session_execution_lease(empty_fence))
    read = await store.load_session(ActivePath(""))
    assert read is not None and read.graph.nodes == [] and read.graph.leaf_node_id == ""
    assert dump_keys(client, f"{key_prefix}:*") == before
    # current_agent_frame_id may be empty and is written as such.
    assert (
        await store.commit_runtime_state(
            minimal("root", current_agent_frame_id="").with_session_execution_lease(fence)
        )
    ).head_revision == 2


async def test_ledger_sum_past_i64_is_refused_and_writes_nothing(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    """Each delta is a valid i64, but the merged sum would not be: the commit is refused as a whole."""
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    fence = await populate(store)
    half = TokenLedgerEntry("s", "m", TokenUsage(2**62, 0, 0, 0))
    await store.commit_runtime_state(minimal("root", usage_deltas=[half]).with_session_execution_lease(fence))
    client = backend.sync_client()
    before = dump_keys(client, f"{key_prefix}:*")
    with pytest.raises(BackendError):
        await store.commit_runtime_state(
            minimal("root", usage_deltas=[half, half]).with_session_execution_lease(fence)
        )
    assert dump_keys(client, f"{key_prefix}:*") == before
    read = await store.load_session(FullGraph())
    assert read is not None and read.head_revision == 2 and read.token_ledger == [half]
