"""Store core: contract §3 scenarios C1-C6, C18, C20-C22 and S1-S9, S12, S13, S15, S19, S31, S34, S35.

Every test runs against real Redis through the ``backend`` fixture (standalone and the 3-primary cluster).
The zombie-holder test and the sync-twin flows live here too, because they replay these scenarios.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from builders import Clock, draft, leased, minimal, node
from redisbed import Backend

from sessionfence import (
    ActivePath,
    AsyncRedisStore,
    AttachmentIntent,
    BackendError,
    DeliveryPolicy,
    DurabilityTier,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HeadRevisionConflict,
    InvalidRequest,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    QueuedWorkClaimExpired,
    QueuedWorkCompletion,
    RedisStore,
    RuntimeCommit,
    RuntimeTurnCommitConflict,
    RuntimeTurnCommitStamp,
    SessionBindingMismatch,
    SessionExecutionLease,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseExpired,
    SessionExecutionLeaseFence,
    SessionGraph,
    SessionMeta,
    SessionNodeRecord,
    SessionRelation,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
    UnsupportedRecordSchemaVersion,
)

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE
IDLE = QueuedWorkClaimBoundary.IDLE


# ---- fixtures and helpers ----------------------------------------------------------------------------------


async def maybe(value: Any) -> Any:
    """Await coroutines (async store) and pass plain results (sync store) through: one flow, both twins."""
    return await value if inspect.isawaitable(value) else value


async def lease(store: Any, sid: str, owner: str, ttl: int = 60_000) -> SessionExecutionLease:
    granted = await maybe(store.try_claim_session_execution_lease(sid, owner, ttl))
    assert granted is not None, f"lease({sid!r}, {owner!r}) was refused"
    assert isinstance(granted, SessionExecutionLease)
    return granted


async def commit_leased(store: Any, commit: RuntimeCommit, owner: str | None = None) -> Any:
    granted = await lease(store, commit.session_id, owner or f"owner-{uuid.uuid4().hex[:8]}")
    return await maybe(store.commit_runtime_state(leased(commit, granted)))


def stamped(commit: RuntimeCommit, turn_id: str, session_id: str | None = None) -> RuntimeCommit:
    stamp = RuntimeTurnCommitStamp(session_id or commit.session_id, turn_id, commit.turn_commit_hash())
    return commit.with_turn_commit(stamp)


def ids(items: Any) -> list[str]:
    return [getattr(x, "node_id", None) or x.batch_id for x in items]


def conversation(
    node_id: str, parent: str | None, role: str, parts: list[tuple[str, str]]
) -> SessionNodeRecord:
    return SessionNodeRecord(
        node_id=node_id,
        parent_node_id=parent,
        timestamp="2026-06-02T00:00:00Z",
        kind="event",
        event={
            "Conversation": {
                "id": f"msg-{node_id}",
                "role": role,
                "parts": [
                    {"id": f"{node_id}-p{i}", "kind": kind, "content": content, "prune_state": "Intact"}
                    for i, (kind, content) in enumerate(parts)
                ],
            }
        },
    )


def branchy() -> RuntimeCommit:
    """C5's graph."""
    return minimal(
        "branchy",
        graph=GraphReplaceFull(
            SessionGraph(
                nodes=[
                    node("root-node"),
                    node("left-node", "root-node"),
                    node("left-leaf", "left-node"),
                    node("right-leaf", "root-node"),
                ],
                leaf_node_id="left-leaf",
            )
        ),
    )


def frame(frame_id: str, previous: str | None, reason: str, snapshot: bytes | None) -> dict[str, Any]:
    """An agent frame as lash writes it (opaque to the store)."""
    return {
        "frame_id": frame_id,
        "session_id": "root",
        "previous_frame_id": previous,
        "status": "active",
        "reason": reason,
        "created_at": "2026-06-02T00:00:00Z",
        "assignment": {"model": {"id": "mock-model"}, "tools": ["read", "write"]},
        "protocol_options": {"payload": {}},
        "execution_state_ref": None,
        "execution_state_snapshot": None if snapshot is None else list(snapshot),
    }


# ---- C1 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [DurabilityTier.INLINE, DurabilityTier.DURABLE])
async def test_C1_reports_declared_durability(
    make_store: Callable[..., AsyncRedisStore], tier: DurabilityTier
) -> None:
    store = make_store(durability=tier)
    assert store.durability_tier() is tier
    # The tier is configuration only: the store works the same either way.
    result = await commit_leased(store, minimal("root"))
    assert result.head_revision == 1
    assert store.durability_tier() is tier


async def test_C1_default_tier_is_durable(make_store: Callable[..., AsyncRedisStore]) -> None:
    assert make_store().durability_tier() is DurabilityTier.DURABLE


# ---- C2 ----------------------------------------------------------------------------------------------------


async def c2_flow(store: Any) -> None:
    f1 = frame("frame-1", None, "initial", None)
    f2 = frame("frame-2", "frame-1", "plan_mode", b"frame-vm")
    commit = minimal(
        "root", agent_frames=[f1, f2], current_agent_frame_id="frame-2", execution_state=b"frame-vm"
    )
    result = await commit_leased(store, commit, "commit-round-trip")
    assert result.head_revision == 1
    read = await maybe(store.load_session(FullGraph()))
    assert read is not None
    assert read.current_agent_frame_id == "frame-2"
    assert len(read.agent_frames) == 2
    stored = next(f for f in read.agent_frames if f["frame_id"] == "frame-2")
    assert stored == f2
    assert stored["reason"] == "plan_mode"
    assert bytes(stored["execution_state_snapshot"]) == b"frame-vm"
    assert read.agent_frames == [f1, f2]
    assert read.checkpoint is not None
    assert read.checkpoint.execution_state == b"frame-vm"
    assert read.head_revision == 1


async def test_C2_commit_round_trips_agent_frames(store: AsyncRedisStore) -> None:
    await c2_flow(store)


# ---- C3 ----------------------------------------------------------------------------------------------------


async def test_C3_rejects_a_second_session(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await commit_leased(store, minimal("alpha"), "bind-alpha")
    beta = await lease(store, "beta", "bind-beta")
    before_head = await store.load_session_head_meta()
    before = snapshot()
    with pytest.raises(SessionBindingMismatch) as info:
        await store.commit_runtime_state(leased(minimal("beta"), beta))
    assert info.value.bound_session_id == "alpha"
    assert info.value.attempted_session_id == "beta"
    assert snapshot() == before
    assert await store.load_session_head_meta() == before_head
    assert before_head is not None and before_head.session_id == "alpha" and before_head.head_revision == 1


# ---- C4 ----------------------------------------------------------------------------------------------------


async def test_C4_hydrates_checkpoint_and_usage(store: AsyncRedisStore) -> None:
    commit = minimal(
        "hydrated",
        tool_state={"generation": 9, "tools": {}},
        plugin_snapshot={"plugins": {}},
        plugin_snapshot_revision=12,
        usage_deltas=[TokenLedgerEntry("turn", "mock-model", TokenUsage(11, 7, 3, 5))],
    )
    await commit_leased(store, commit)
    read = await store.load_session(FullGraph())
    assert read is not None
    assert read.session_id == "hydrated"
    assert read.checkpoint is not None
    assert read.checkpoint.tool_state["generation"] == 9
    assert read.checkpoint.plugin_snapshot == {"plugins": {}}
    assert read.checkpoint.plugin_snapshot_revision == 12
    assert read.token_ledger == [TokenLedgerEntry("turn", "mock-model", TokenUsage(11, 7, 3, 5))]
    usage = read.token_ledger[0].usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_tokens) == (
        11,
        7,
        3,
        5,
    )


# ---- C5 ----------------------------------------------------------------------------------------------------


async def test_C5_active_path_selects_requested_ancestry(store: AsyncRedisStore) -> None:
    await commit_leased(store, branchy())
    full = await store.load_session(FullGraph())
    assert full is not None
    assert ids(full.graph.nodes) == ["root-node", "left-node", "left-leaf", "right-leaf"]
    assert full.graph.leaf_node_id == "left-leaf"
    active = await store.load_session(ActivePath(None))
    assert active is not None
    assert ids(active.graph.nodes) == ["root-node", "left-node", "left-leaf"]
    assert active.graph.leaf_node_id == "left-leaf"
    right = await store.load_session(ActivePath("right-leaf"))
    assert right is not None
    assert ids(right.graph.nodes) == ["root-node", "right-leaf"]
    assert right.graph.leaf_node_id == "right-leaf"
    # Nodes come back equal to what was committed (parents, bodies, timestamps).
    assert full.graph.nodes == branchy().graph.graph.nodes  # type: ignore[union-attr]
    # Reads never move the stored leaf.
    head = await store.load_session_head_meta()
    assert head is not None and head.leaf_node_id == "left-leaf"


# ---- C6 ----------------------------------------------------------------------------------------------------


async def c6_flow(store: Any) -> None:
    # 1. First claim wins, nobody else (not even another owner) gets the lane.
    first = await lease(store, "root", "owner-a")
    assert first.fencing_token == 1
    assert first.lease_token == f"root:owner-a:{first.claimed_at_epoch_ms}:1"
    assert first.expires_at_epoch_ms == first.claimed_at_epoch_ms + 60_000
    assert await maybe(store.try_claim_session_execution_lease("root", "owner-b", 60_000)) is None
    # 2. Renew keeps the token and does not move the expiry back.
    renewed = await maybe(store.renew_session_execution_lease(first.fence(), 60_000))
    assert renewed.lease_token == first.lease_token
    assert renewed.fencing_token == first.fencing_token
    assert renewed.claimed_at_epoch_ms == first.claimed_at_epoch_ms
    assert renewed.expires_at_epoch_ms >= first.expires_at_epoch_ms
    assert renewed.fence() == first.fence()
    # 3. A stale token: renew refuses, release is a silent no-op.
    stale = first.fence().model_copy(update={"lease_token": first.lease_token + ":stale"})
    with pytest.raises(SessionExecutionLeaseExpired) as info:
        await maybe(store.renew_session_execution_lease(stale, 60_000))
    assert info.value.session_id == "root"
    stale_completion = first.completion().model_copy(update={"lease_token": first.lease_token + ":stale"})
    assert await maybe(store.release_session_execution_lease(stale_completion)) is None
    assert await maybe(store.try_claim_session_execution_lease("root", "owner-b", 60_000)) is None
    # 4. Release; the successor's fencing token is larger; a repeated stale release frees nothing.
    await maybe(store.release_session_execution_lease(renewed.completion()))
    second = await lease(store, "root", "owner-b")
    assert second.fencing_token > first.fencing_token
    await maybe(store.release_session_execution_lease(first.completion()))
    assert await maybe(store.try_claim_session_execution_lease("root", "owner-c", 60_000)) is None
    await maybe(store.release_session_execution_lease(second.completion()))
    # 5. A TTL of 0 is born expired: the next claim succeeds at once with a larger token.
    expired = await maybe(store.try_claim_session_execution_lease("root", "owner-expired", 0))
    assert expired is not None
    assert expired.expires_at_epoch_ms == expired.claimed_at_epoch_ms
    reclaimed = await lease(store, "root", "owner-reclaim")
    assert reclaimed.fencing_token > expired.fencing_token
    await maybe(store.release_session_execution_lease(reclaimed.completion()))
    # 6. No fence, no commit.
    with pytest.raises(SessionExecutionLeaseExpired):
        await maybe(store.commit_runtime_state(minimal("root")))
    assert await maybe(store.load_session(FullGraph())) is None
    # 7. A leased commit applies and releases its lease.
    cl = await lease(store, "root", "commit-owner")
    applied = await maybe(store.commit_runtime_state(leased(minimal("root"), cl)))
    assert applied.head_revision == 1
    after = await lease(store, "root", "after-commit")
    await maybe(store.release_session_execution_lease(after.completion()))
    # 8. A stamped commit replays without any lease.
    t = stamped(minimal("root", turn_index=1), "lease-replay-turn")
    turn_owner = await lease(store, "root", "turn-owner")
    first_turn = await maybe(store.commit_runtime_state(leased(t, turn_owner)))
    assert first_turn.head_revision == 2
    again = await maybe(store.commit_runtime_state(t))
    assert again.head_revision == first_turn.head_revision
    assert again.checkpoint_ref == first_turn.checkpoint_ref
    # 9. Queue claims are fenced by the session lease too.
    batch = await maybe(store.enqueue_queued_work(draft("root", "fenced queue", EARLIEST, EXCL)))
    with pytest.raises(SessionExecutionLeaseExpired):
        await maybe(store.claim_ready_queued_work("root", cl.fence(), "queue-owner", IDLE, 60_000, 1))
    fresh = await lease(store, "root", "queue-owner")
    claim = await maybe(store.claim_ready_queued_work("root", fresh.fence(), "queue-owner", IDLE, 60_000, 1))
    assert claim is not None
    assert ids(claim.batches) == [batch.batch_id]
    await maybe(store.release_session_execution_lease(fresh.completion()))


async def test_C6_session_execution_lease_contract(store: AsyncRedisStore) -> None:
    await c6_flow(store)


# ---- sync twin ---------------------------------------------------------------------------------------------


def test_sync_twin_C2_and_C6_flows(backend: Backend, key_prefix: str) -> None:
    """The same flows through the blocking `RedisStore` (driven by a private loop; the calls block)."""
    c2 = RedisStore(backend.sync_client(), f"c2-{uuid.uuid4()}", key_prefix=key_prefix)
    c6 = RedisStore(backend.sync_client(), f"c6-{uuid.uuid4()}", key_prefix=key_prefix)
    assert c2.durability_tier() is DurabilityTier.DURABLE
    asyncio.run(c2_flow(c2))
    asyncio.run(c6_flow(c6))
    # The sync twin sees exactly what the async store would: a second handle reads the same head.
    other = RedisStore(backend.sync_client(), c6.namespace, key_prefix=key_prefix)
    head = other.load_session_head_meta()
    assert head is not None and head.head_revision == 2 and head.session_id == "root"


# ---- C18 ---------------------------------------------------------------------------------------------------


async def test_C18_session_metadata_round_trips(store: AsyncRedisStore) -> None:
    assert await store.load_session_meta() is None
    meta = SessionMeta(
        "root",
        "Conformance Root",
        "2026-06-02T00:00:00Z",
        "gpt-5.4-mini",
        "/srv/conformance",
        SessionRelation.root(),
    )
    await store.save_session_meta(meta)
    loaded = await store.load_session_meta()
    assert loaded == meta
    assert loaded is not None
    assert (loaded.session_id, loaded.session_name, loaded.created_at, loaded.model, loaded.cwd) == (
        "root",
        "Conformance Root",
        "2026-06-02T00:00:00Z",
        "gpt-5.4-mini",
        "/srv/conformance",
    )
    assert loaded.relation == SessionRelation.root()
    assert loaded.parent_session_id is None
    # Saving replaces the record wholesale (child relation, no cwd).
    child = SessionMeta("root", "renamed", "t", "m", None, SessionRelation.child("parent", {"type": "turn"}))
    await store.save_session_meta(child)
    assert await store.load_session_meta() == child
    # Metadata alone does not make a session readable.
    assert await store.load_session(FullGraph()) is None


# ---- C20 ---------------------------------------------------------------------------------------------------


async def test_C20_final_commit_stamp_is_idempotent_and_conflicts_on_changed_hash(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    c = stamped(minimal("root"), "provider-turn")
    first = await commit_leased(store, c, "provider-turn")
    assert first.head_revision == 1
    again = await store.commit_runtime_state(c)
    assert (again.head_revision, again.checkpoint_ref) == (first.head_revision, first.checkpoint_ref)
    assert again == first
    assert minimal("root", expected_head_revision=first.head_revision).turn_commit_hash() == (
        c.turn_commit.turn_commit_hash  # type: ignore[union-attr]
    )
    changed = stamped(minimal("root", turn_index=1), "provider-turn")
    before = snapshot()
    with pytest.raises(RuntimeTurnCommitConflict) as info:
        await store.commit_runtime_state(changed)
    assert (info.value.session_id, info.value.turn_id) == ("root", "provider-turn")
    assert snapshot() == before
    head = await store.load_session_head_meta()
    assert head is not None and head.head_revision == 1


# ---- C21 / C22 ---------------------------------------------------------------------------------------------


async def c22_race(a: Any, b: Any) -> None:
    """C22: two handles claim the same fresh lane at once; exactly one wins."""
    results = await asyncio.gather(
        a.try_claim_session_execution_lease("first-claim-race", "owner-a", 60_000),
        b.try_claim_session_execution_lease("first-claim-race", "owner-b", 60_000),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, results
    assert winners[0].fencing_token == 1
    assert winners[0].owner_id in ("owner-a", "owner-b")
    await a.release_session_execution_lease(winners[0].completion())
    # Released: the lane is free again, with the next fencing token.
    again = await lease(b, "first-claim-race", "owner-c")
    assert again.fencing_token == 2
    await b.release_session_execution_lease(again.completion())


async def test_C22_concurrent_first_lease_claims_from_two_handles(
    make_store: Callable[..., AsyncRedisStore],
) -> None:
    for _ in range(5):  # a few rounds on fresh lanes make a lost race more likely to show
        a, b = make_store(), make_store()
        await c22_race(a, b)
        await a.client.delete(a.keys.leases, a.keys.fencing)


async def c21_writes(a: AsyncRedisStore) -> None:
    await a.save_session_meta(
        SessionMeta(
            "root",
            "Durable Root",
            "2026-06-02T00:00:00Z",
            "gpt-5.4-mini",
            "/srv/reopen",
            SessionRelation.root(),
        )
    )
    await commit_leased(a, minimal("root", tool_state={"generation": 77, "tools": {}}))
    await a.enqueue_queued_work(draft("root", "survives reopen", EARLIEST, EXCL, source="reopen:queued"))
    await a.record_intent(AttachmentIntent("reopen-attachment", "root", "sha256:reopen-attachment", 100))


async def c21_reads(b: AsyncRedisStore) -> None:
    meta = await b.load_session_meta()
    assert meta is not None and meta.session_name == "Durable Root"
    read = await b.load_session(FullGraph())
    assert read is not None
    assert read.session_id == "root"
    assert read.checkpoint is not None and read.checkpoint.tool_state == {"generation": 77, "tools": {}}
    queued = await b.list_queued_work("root")
    assert len(queued) == 1
    assert queued[0].items[0].payload["input"]["items"][0]["text"] == "survives reopen"
    assert queued[0].source_key == "reopen:queued"
    uncommitted = await b.list_uncommitted(200)
    assert "reopen-attachment" in [row.attachment_id for row in uncommitted]


async def test_C21_durable_namespace_survives_reopen(make_store: Callable[..., AsyncRedisStore]) -> None:
    a, b = make_store(), make_store()
    await c22_race(a, b)
    await c21_writes(a)
    await c21_reads(b)
    await a.client.aclose()
    # A third handle on a brand-new connection sees the same namespace.
    await c21_reads(make_store())


# ---- S1-S9 -------------------------------------------------------------------------------------------------


async def test_S1_cas_across_handles(make_store: Callable[..., AsyncRedisStore]) -> None:
    a, b = make_store(), make_store()
    held = await lease(a, "root", "session-owner")
    commit = minimal("root", expected_head_revision=0).with_session_execution_lease(held.fence())
    results = await asyncio.gather(
        a.commit_runtime_state(commit), b.commit_runtime_state(commit), return_exceptions=True
    )
    applied = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(applied) == 1 and len(refused) == 1, results
    assert applied[0].head_revision == 1
    assert isinstance(refused[0], HeadRevisionConflict)
    assert (refused[0].expected, refused[0].actual) == (0, 1)
    head = await b.load_session_head_meta()
    assert head is not None and head.head_revision == 1
    # The fence was not consumed: the lease is still held.
    assert await b.try_claim_session_execution_lease("root", "other", 60_000) is None


async def test_S2_cas_rules(store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]) -> None:
    held = await lease(store, "root", "cas")
    before = snapshot()
    with pytest.raises(HeadRevisionConflict) as info:
        await store.commit_runtime_state(leased(minimal("root", expected_head_revision=5), held))
    assert (info.value.expected, info.value.actual) == (5, 0)
    assert await store.load_session(FullGraph()) is None
    assert snapshot() == before  # the included release was not applied either
    assert (
        await store.commit_runtime_state(leased(minimal("root", expected_head_revision=0), held))
    ).head_revision == 1
    held = await lease(store, "root", "cas")
    with pytest.raises(HeadRevisionConflict) as info:
        await store.commit_runtime_state(leased(minimal("root", expected_head_revision=0), held))
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert (await store.commit_runtime_state(leased(minimal("root"), held))).head_revision == 2


async def test_S3_stamp_session_mismatch(store: AsyncRedisStore) -> None:
    held = await lease(store, "root", "w")
    commit = leased(stamped(minimal("root"), "t", session_id="other"), held)
    with pytest.raises(RuntimeTurnCommitConflict) as info:
        await store.commit_runtime_state(commit)
    assert (info.value.session_id, info.value.turn_id) == ("other", "t")
    assert await store.load_session(FullGraph()) is None
    # Nothing was released either.
    assert await store.try_claim_session_execution_lease("root", "x", 60_000) is None


async def test_S4_conflict_outranks_cas_and_lease(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await commit_leased(store, stamped(minimal("root"), "t"))
    other = minimal("root", turn_index=3, expected_head_revision=99)
    bad = other.with_turn_commit(RuntimeTurnCommitStamp("root", "t", other.turn_commit_hash()))
    before = snapshot()
    with pytest.raises(RuntimeTurnCommitConflict) as info:
        await store.commit_runtime_state(bad)
    assert (info.value.session_id, info.value.turn_id) == ("root", "t")
    assert snapshot() == before


async def test_S5_failed_stamped_commit_records_nothing(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await commit_leased(store, minimal("root"))
    held = await lease(store, "root", "w")
    base = minimal("root", turn_index=5)
    stamp = RuntimeTurnCommitStamp("root", "t2", base.turn_commit_hash())
    wrong = leased(base.model_copy(update={"expected_head_revision": 7}).with_turn_commit(stamp), held)
    before = snapshot()
    with pytest.raises(HeadRevisionConflict) as info:
        await store.commit_runtime_state(wrong)
    assert (info.value.expected, info.value.actual) == (7, 1)
    assert snapshot() == before
    right = leased(base.model_copy(update={"expected_head_revision": 1}).with_turn_commit(stamp), held)
    assert right.turn_commit_hash() == wrong.turn_commit_hash()
    applied = await store.commit_runtime_state(right)
    assert applied.head_revision == 2
    again = await store.commit_runtime_state(right)
    assert again == applied
    head = await store.load_session_head_meta()
    assert head is not None and head.head_revision == 2


async def test_S6_replay_applies_only_its_release(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    l1 = await lease(store, "root", "w1")
    c = stamped(minimal("root", tool_state={"generation": 1, "tools": {}}), "turn-s6")
    first = await store.commit_runtime_state(c.with_session_execution_lease(l1.fence()))
    assert first.head_revision == 1
    assert await store.try_claim_session_execution_lease("root", "w2", 60_000) is None  # L1 still live
    replay = await store.commit_runtime_state(leased(c, l1))
    assert replay == first
    l2 = await lease(store, "root", "w2")
    assert l2.fencing_token == 2
    before = snapshot()
    stale = await store.commit_runtime_state(c.with_session_execution_lease(l1.fence()))
    assert stale == first
    assert snapshot() == before  # a replay writes nothing
    head = await store.load_session_head_meta()
    assert head is not None and head.head_revision == 1


async def test_S7_fence_rules_in_commits(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    other = await lease(store, "other", "w")
    before = snapshot()
    with pytest.raises(SessionExecutionLeaseExpired) as info:
        await store.commit_runtime_state(minimal("root").with_session_execution_lease(other.fence()))
    assert info.value.session_id == "root"
    held = await lease(store, "root", "w")
    before = snapshot()
    with pytest.raises(SessionExecutionLeaseExpired) as info:
        await store.commit_runtime_state(minimal("root").releasing_session_execution_lease(held.completion()))
    assert info.value.session_id == "root"
    assert snapshot() == before
    assert await store.try_claim_session_execution_lease("root", "x", 60_000) is None  # L stays live
    # A fence with a forged fencing token (right owner and token text) is refused as well.
    forged = held.fence().model_copy(update={"fencing_token": held.fencing_token + 1})
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.commit_runtime_state(minimal("root").with_session_execution_lease(forged))
    assert snapshot() == before


async def test_S8_no_reentry_and_renew_may_shorten(make_store: Callable[..., AsyncRedisStore]) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    held = await store.try_claim_session_execution_lease("root", "w1", 100)
    assert held is not None
    assert (held.fencing_token, held.claimed_at_epoch_ms, held.expires_at_epoch_ms) == (1, 1000, 1100)
    assert held.lease_token == "root:w1:1000:1"
    assert await store.try_claim_session_execution_lease("root", "w1", 60_000) is None
    clock.now = 1050
    shorter = await store.renew_session_execution_lease(held.fence(), 10)
    assert (shorter.claimed_at_epoch_ms, shorter.expires_at_epoch_ms) == (1000, 1060)
    assert shorter.fence() == held.fence()
    clock.now = 1059
    assert await store.try_claim_session_execution_lease("root", "w2", 100) is None
    clock.now = 1060
    successor = await store.try_claim_session_execution_lease("root", "w2", 100)
    assert successor is not None and successor.fencing_token == 2
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.renew_session_execution_lease(held.fence(), 10)


async def test_S9_crash_between_claim_and_commit(
    make_store: Callable[..., AsyncRedisStore], snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    clock = Clock(500)
    store = make_store(clock=clock)
    n = (await commit_leased(store, minimal("root"))).head_revision
    assert n == 1
    await store.enqueue_queued_work(draft("root", "crash", EARLIEST, EXCL))
    clock.now = 1000
    l1 = await store.try_claim_session_execution_lease("root", "w1", 100)
    assert l1 is not None
    c1 = await store.claim_ready_queued_work("root", l1.fence(), "w1", IDLE, 100, 1)
    assert c1 is not None
    clock.now = 1200
    l2 = await lease(store, "root", "w2")
    c2 = await store.claim_ready_queued_work("root", l2.fence(), "w2", IDLE, 60_000, 1)
    assert c2 is not None
    assert ids(c2.batches) == ids(c1.batches)
    assert c2.fencing_token == 2
    won = await store.commit_runtime_state(
        leased(minimal("root").completing_queue_claim(c2.completion()), l2)
    )
    assert won.head_revision == n + 1
    assert await store.list_queued_work("root") == []
    zombie = minimal("root", expected_head_revision=n).completing_queue_claim(c1.completion())
    before = snapshot()
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.commit_runtime_state(zombie.with_session_execution_lease(l1.fence()))
    assert snapshot() == before
    l3 = await lease(store, "root", "w1")
    before = snapshot()
    with pytest.raises(HeadRevisionConflict) as info:
        await store.commit_runtime_state(zombie.with_session_execution_lease(l3.fence()))
    assert (info.value.expected, info.value.actual) == (n, n + 1)
    blind = zombie.model_copy(update={"expected_head_revision": None}).with_session_execution_lease(
        l3.fence()
    )
    with pytest.raises(QueuedWorkClaimExpired) as claim_info:
        await store.commit_runtime_state(blind)
    assert claim_info.value.claim_id == c1.claim_id
    assert snapshot() == before
    head = await store.load_session_head_meta()
    assert head is not None and head.head_revision == n + 1


# ---- zombie holder -----------------------------------------------------------------------------------------


async def test_zombie_holder_is_fenced_and_changes_nothing(
    make_store: Callable[..., AsyncRedisStore], snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    clock = Clock(1000)
    a, b = make_store(clock=clock), make_store(clock=clock)
    await commit_leased(a, minimal("root", tool_state={"generation": 1, "tools": {}}))
    zombie = await a.try_claim_session_execution_lease("root", "holder-a", 100)
    assert zombie is not None
    clock.now = 1101  # A pauses past its expiry ...
    successor = await b.try_claim_session_execution_lease("root", "holder-b", 60_000)
    assert successor is not None and successor.fencing_token > zombie.fencing_token
    before = snapshot()
    commit = minimal("root", expected_head_revision=1, tool_state={"generation": 2, "tools": {}})
    with pytest.raises(SessionExecutionLeaseExpired):
        await a.commit_runtime_state(leased(commit, zombie))
    with pytest.raises(SessionExecutionLeaseExpired):
        await a.renew_session_execution_lease(zombie.fence(), 60_000)
    await a.release_session_execution_lease(zombie.completion())  # silent, and must not free B's lane
    assert snapshot() == before
    assert await a.try_claim_session_execution_lease("root", "holder-c", 60_000) is None
    # The successor still commits normally.
    assert (await b.commit_runtime_state(leased(commit, successor))).head_revision == 2


async def test_lapsed_untaken_lease_is_refused_but_may_be_released(
    make_store: Callable[..., AsyncRedisStore],
) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    held = await store.try_claim_session_execution_lease("root", "w", 100)
    assert held is not None
    clock.now = 1100  # expires_at == now: not live any more
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.commit_runtime_state(leased(minimal("root"), held))
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.renew_session_execution_lease(held.fence(), 100)
    await store.release_session_execution_lease(held.completion())
    after = await store.try_claim_session_execution_lease("root", "w2", 100)
    assert after is not None and after.fencing_token == 2


# ---- graph: S12, S13 ---------------------------------------------------------------------------------------


async def test_S12_active_path_edges(store: AsyncRedisStore) -> None:
    await commit_leased(store, branchy())
    nope = await store.load_session(ActivePath("nope"))
    assert nope is not None and nope.graph.nodes == [] and nope.graph.leaf_node_id == "nope"
    await store.tombstone_nodes(["left-node"])
    cut = await store.load_session(ActivePath("left-leaf"))
    assert cut is not None and ids(cut.graph.nodes) == ["left-leaf"]
    full = await store.load_session(FullGraph())
    assert full is not None and full.graph.leaf_node_id == "left-leaf"
    assert ids(full.graph.nodes) == ["root-node", "left-leaf", "right-leaf"]
    tomb = await store.load_session(ActivePath("left-node"))
    assert tomb is not None and tomb.graph.nodes == [] and tomb.graph.leaf_node_id == "left-node"
    await commit_leased(store, minimal("branchy", graph=GraphUnchanged(None)))
    empty = await store.load_session(ActivePath(None))
    assert empty is not None and empty.graph.nodes == [] and empty.graph.leaf_node_id is None
    cycle = GraphReplaceFull(SessionGraph(nodes=[node("p", "q"), node("q", "p")], leaf_node_id="p"))
    await commit_leased(store, minimal("branchy", graph=cycle))
    walked = await store.load_session(ActivePath(None))
    assert walked is not None and ids(walked.graph.nodes) == ["q", "p"]
    assert walked.graph.leaf_node_id == "p"


async def test_S13_leaf_and_count(store: AsyncRedisStore) -> None:
    await commit_leased(store, branchy())
    result = await commit_leased(
        store, minimal("branchy", expected_head_revision=1, graph=GraphUnchanged("right-leaf"))
    )
    assert result.head_revision == 2
    read = await store.load_session(FullGraph())
    assert read is not None
    assert ids(read.graph.nodes) == ["root-node", "left-node", "left-leaf", "right-leaf"]
    assert read.graph.leaf_node_id == "right-leaf"
    head = await store.load_session_head_meta()
    assert head is not None and head.graph_node_count == 4 and head.leaf_node_id == "right-leaf"
    await store.tombstone_nodes(["right-leaf"])
    head = await store.load_session_head_meta()
    assert head is not None and head.graph_node_count == 4 and head.leaf_node_id == "right-leaf"
    await commit_leased(store, minimal("branchy", graph=GraphUnchanged("left-leaf")))
    head = await store.load_session_head_meta()
    assert head is not None and head.graph_node_count == 3 and head.head_revision == 3
    # Append counts the new nodes; ReplaceFull starts over.
    await commit_leased(
        store, minimal("branchy", graph=GraphAppend([node("n1", "left-leaf"), node("n2", "n1")], "n2"))
    )
    head = await store.load_session_head_meta()
    assert head is not None and head.graph_node_count == 5 and head.leaf_node_id == "n2"
    await commit_leased(store, minimal("branchy", graph=GraphReplaceFull(SessionGraph([node("x")], None))))
    head = await store.load_session_head_meta()
    assert head is not None and head.graph_node_count == 1 and head.leaf_node_id is None


# ---- checkpoints and usage: S15, S19 -----------------------------------------------------------------------


async def test_S15_content_addressing(store: AsyncRedisStore) -> None:
    gen5 = {"generation": 5, "tools": {}}
    r1 = await commit_leased(store, minimal("root", tool_state=gen5))
    tool_ref = r1.manifest.tool_state_ref
    assert tool_ref == hashlib.sha256(b'{"generation":5,"tools":{}}').hexdigest()
    r2 = await commit_leased(store, minimal("root", tool_state=gen5))
    assert r2.checkpoint_ref == r1.checkpoint_ref and r2.manifest.tool_state_ref == tool_ref
    r3 = await commit_leased(store, minimal("root", tool_state=gen5, turn_index=1))
    assert r3.checkpoint_ref != r1.checkpoint_ref and r3.manifest.tool_state_ref == tool_ref
    r4 = await commit_leased(store, minimal("root", tool_state_ref=tool_ref))
    assert r4.manifest.tool_state_ref == tool_ref
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert read.checkpoint.tool_state == gen5 and read.checkpoint.tool_state_ref == tool_ref
    assert read.checkpoint_ref == r4.checkpoint_ref
    gen6 = {"tools": {}, "generation": 6}
    r5 = await commit_leased(store, minimal("root", tool_state=gen6, tool_state_ref="bogus"))
    assert r5.manifest.tool_state_ref == hashlib.sha256(b'{"generation":6,"tools":{}}').hexdigest()
    # The checkpoint ref is the SHA-256 of the manifest's canonical bytes.
    manifest = (
        b'{"tool_state_ref":"'
        + r5.manifest.tool_state_ref.encode()
        + b'","turn_state":{"protocol_turn_options":'
        b'{"payload":{}},"token_usage":{"cached_input_tokens":0,"input_tokens":0,"output_tokens":0,'
        b'"reasoning_tokens":0},"turn_index":0}}'
    )
    assert r5.checkpoint_ref == hashlib.sha256(manifest).hexdigest()
    await commit_leased(store, minimal("root", tool_state_ref="unknown"))
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert read.checkpoint.tool_state is None and read.checkpoint.tool_state_ref == "unknown"


async def test_S19_ledger_merge(store: AsyncRedisStore) -> None:
    def entry(model: str, i: int, o: int, c: int, r: int) -> TokenLedgerEntry:
        return TokenLedgerEntry("turn", model, TokenUsage(i, o, c, r))

    deltas = [
        entry("m1", 11, 7, 3, 5),
        entry("m2", 1, 0, 0, 0),
        entry("m1", 11, 7, 3, 5),
        entry("m3", 0, 0, 0, 0),
        entry("m4", 0, 0, 5, 0),
    ]
    commit = stamped(minimal("root", usage_deltas=deltas), "usage-turn")
    await commit_leased(store, commit)
    expected = [entry("m1", 22, 14, 6, 10), entry("m2", 1, 0, 0, 0), entry("m4", 0, 0, 5, 0)]
    read = await store.load_session(FullGraph())
    assert read is not None and read.token_ledger == expected
    await store.commit_runtime_state(commit)  # replay: usage not counted again
    read = await store.load_session(FullGraph())
    assert read is not None and read.token_ledger == expected
    # An unstamped commit counts again, in order of first appearance; negative usage is allowed.
    await commit_leased(
        store, minimal("root", usage_deltas=[entry("m5", -1, 0, 0, 0), entry("m2", 1, 1, 1, 1)])
    )
    read = await store.load_session(FullGraph())
    assert read is not None
    assert read.token_ledger == [
        *expected[:1],
        entry("m2", 2, 1, 1, 1),
        expected[2],
        entry("m5", -1, 0, 0, 0),
    ]
    assert (await store.load_session_head_meta()).token_ledger == []  # type: ignore[union-attr]


# ---- metadata: S31 -----------------------------------------------------------------------------------------


async def test_S31_picker_info(store: AsyncRedisStore) -> None:
    assert await store.load_picker_info() is None
    nodes = [
        conversation(
            "u1", None, "User", [("Text", "hello"), ("ToolCall", "call"), ("Image", ""), ("Text", "  ")]
        ),
        conversation("a1", "u1", "Assistant", [("Text", "hi there")]),
        conversation("u2", "a1", "User", [("Text", "again")]),
    ]
    await commit_leased(store, minimal("root", graph=GraphReplaceFull(SessionGraph(nodes, "u2"))))
    assert await store.load_picker_info() is None  # still no meta
    meta = SessionMeta("root", "Picker", "2026-06-02T00:00:00Z", "m", "/srv/picker", SessionRelation.root())
    await store.save_session_meta(meta)
    info = await store.load_picker_info()
    assert info is not None
    assert (info.session_id, info.cwd, info.relation) == ("root", "/srv/picker", SessionRelation.root())
    assert info.user_message_count == 2
    assert info.first_user_message == "hello\n\n[Image attached]"
    await store.tombstone_nodes(["u1"])
    info = await store.load_picker_info()
    assert info is not None
    assert info.user_message_count == 1 and info.first_user_message == "again"
    await store.tombstone_nodes(["u2"])
    info = await store.load_picker_info()
    assert info is not None and info.user_message_count == 0 and info.first_user_message == ""


# ---- schema marker: S34 ------------------------------------------------------------------------------------


async def test_S34_foreign_schema_marker_refuses_every_operation(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    held = await lease(store, "root", "w")
    await store.commit_runtime_state(
        minimal("root", graph=GraphReplaceFull(SessionGraph([node("a")], "a"))).with_session_execution_lease(
            held.fence()
        )
    )
    await store.save_session_meta(SessionMeta("root", "n", "t", "m"))
    batch = await store.enqueue_queued_work(draft("root", "q", EARLIEST, EXCL))
    await store.record_intent(AttachmentIntent("att", "root", "uri", 100))
    await store.client.set(store.keys.schema, b"99")
    fence = held.fence()
    fake_claim = QueuedWorkClaim(
        session_id="root",
        claim_id="qwc:1:1",
        owner_id="o",
        lease_token="t",
        fencing_token=1,
        claimed_at_epoch_ms=0,
        expires_at_epoch_ms=0,
        batches=[batch],
    )
    operations: dict[str, Callable[[], Any]] = {
        "load_session full": lambda: store.load_session(FullGraph()),
        "load_session path": lambda: store.load_session(ActivePath(None)),
        "load_session_head_meta": store.load_session_head_meta,
        "load_node": lambda: store.load_node("a"),
        "commit": lambda: store.commit_runtime_state(minimal("root").with_session_execution_lease(fence)),
        "commit stamped": lambda: store.commit_runtime_state(stamped(minimal("root"), "t")),
        "try_claim": lambda: store.try_claim_session_execution_lease("fresh", "w", 60_000),
        "renew": lambda: store.renew_session_execution_lease(fence, 60_000),
        "release": lambda: store.release_session_execution_lease(held.completion()),
        "enqueue": lambda: store.enqueue_queued_work(draft("root", "q2", EARLIEST, EXCL)),
        "claim": lambda: store.claim_ready_queued_work("root", fence, "o", IDLE, 60_000, 1),
        "claim by ids": lambda: store.claim_ready_queued_work_by_batch_ids(
            "root", fence, "o", IDLE, 60_000, [batch.batch_id]
        ),
        "renew claim": lambda: store.renew_queued_work_claim(fake_claim, 60_000),
        "abandon claim": lambda: store.abandon_queued_work_claim(fake_claim),
        "cancel": lambda: store.cancel_queued_work_batch("root", batch.batch_id),
        "list": lambda: store.list_queued_work("root"),
        "list pending": lambda: store.list_pending_queued_work("root"),
        "save meta": lambda: store.save_session_meta(SessionMeta("root", "n2", "t", "m")),
        "load meta": store.load_session_meta,
        "picker": store.load_picker_info,
        "tombstone": lambda: store.tombstone_nodes(["a"]),
        "vacuum": store.vacuum,
        "gc": store.gc_unreachable,
        "record intent": lambda: store.record_intent(AttachmentIntent("att2", "root", "uri", 100)),
        "commit refs": lambda: store.commit_refs("root", ["att"]),
        "list uncommitted": lambda: store.list_uncommitted(200),
        "forget": lambda: store.forget("att"),
    }
    before = snapshot()
    for name, operation in operations.items():
        with pytest.raises(UnsupportedRecordSchemaVersion) as info:
            await operation()
        err = info.value
        assert (err.record_kind, err.actual, err.expected) == ("namespace", 99, 1), name
        assert snapshot() == before, name


async def test_S34_concurrent_first_writes_leave_marker_1(
    make_store: Callable[..., AsyncRedisStore], backend: Backend
) -> None:
    handles = [make_store() for _ in range(16)]

    async def first_write(i: int, store: AsyncRedisStore) -> Any:
        match i % 4:
            case 0:
                return await store.try_claim_session_execution_lease(f"s{i}", f"w{i}", 60_000)
            case 1:
                return await store.save_session_meta(SessionMeta("root", f"n{i}", "t", "m"))
            case 2:
                return await store.record_intent(AttachmentIntent(f"att{i}", "root", "uri", 100))
            case _:
                return await store.enqueue_queued_work(draft(f"s{i}", "q", EARLIEST, EXCL))

    results = await asyncio.gather(*(first_write(i, s) for i, s in enumerate(handles)))
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert result is not None and result.fencing_token == 1
    assert backend.sync_client().get(handles[0].keys.schema) == b"1"
    assert len(await handles[0].list_uncommitted(1000)) == 4


# ---- validation: S35 ---------------------------------------------------------------------------------------


async def test_S35_argument_validation(store: AsyncRedisStore, backend: Backend, key_prefix: str) -> None:
    client = backend.sync_client()
    fence = SessionExecutionLeaseFence(
        session_id="root", owner_id="w", lease_token="root:w:1:1", fencing_token=1
    )
    calls: dict[str, Callable[[], Any]] = {
        "expected 2**63": lambda: store.commit_runtime_state(
            minimal("root", expected_head_revision=2**63).with_session_execution_lease(fence)
        ),
        "expected -1": lambda: store.commit_runtime_state(
            minimal("root", expected_head_revision=-1).with_session_execution_lease(fence)
        ),
        "ttl -1": lambda: store.try_claim_session_execution_lease("root", "w", -1),
        "renew ttl -1": lambda: store.renew_session_execution_lease(fence, -1),
        "max_batches -1": lambda: store.claim_ready_queued_work("root", fence, "w", IDLE, 100, -1),
        "owner empty": lambda: store.try_claim_session_execution_lease("root", "", 100),
        "session empty": lambda: store.try_claim_session_execution_lease("", "w", 100),
        "commit session empty": lambda: store.commit_runtime_state(
            minimal("").with_session_execution_lease(fence)
        ),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidRequest) as info:
            await call()
        assert isinstance(info.value, ValueError), name
        assert list(client.scan_iter(match=f"{key_prefix}:*")) == [], name


async def test_release_of_unknown_session_is_a_silent_no_op(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    held = await lease(store, "root", "w")
    before = snapshot()
    unknown = SessionExecutionLeaseCompletion(
        session_id="nobody", owner_id="w", lease_token="nobody:w:1:1", fencing_token=1
    )
    assert await store.release_session_execution_lease(unknown) is None
    assert snapshot() == before
    await store.release_session_execution_lease(held.completion())
    await store.release_session_execution_lease(held.completion())  # repeated: fine
    again = await lease(store, "root", "w")
    assert again.fencing_token == 2


async def test_commit_checks_run_in_contract_order(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    """§2.3 order: binding, stamp session, replay, fence, CAS, completions, node collisions.

    Each refusal writes nothing.
    """
    await commit_leased(store, minimal("alpha", graph=GraphReplaceFull(SessionGraph([node("A")], "A"))))
    held = await lease(store, "alpha", "w")
    fence = held.fence()
    bogus = QueuedWorkCompletion(
        session_id="alpha", claim_id="qwc:9:9", lease_token="nope", batch_ids=["qwb:x"]
    )
    collide = GraphAppend([node("A")], "A")
    before = snapshot()
    cases: list[tuple[RuntimeCommit, type[Exception]]] = [
        # binding outranks a stamp for another session
        (
            stamped(minimal("beta"), "t", session_id="other").with_session_execution_lease(fence),
            SessionBindingMismatch,
        ),
        # stamp session outranks the missing fence
        (stamped(minimal("alpha"), "t", session_id="other"), RuntimeTurnCommitConflict),
        # the fence outranks CAS
        (minimal("alpha", expected_head_revision=99), SessionExecutionLeaseExpired),
        # CAS outranks completions
        (
            minimal("alpha", expected_head_revision=99)
            .completing_queue_claim(bogus)
            .with_session_execution_lease(fence),
            HeadRevisionConflict,
        ),
        # completions outrank node collisions
        (
            minimal("alpha", graph=collide).completing_queue_claim(bogus).with_session_execution_lease(fence),
            QueuedWorkClaimExpired,
        ),
        # a node collision alone: BackendError, usage and attachment ids not applied either
        (
            minimal(
                "alpha",
                graph=collide,
                usage_deltas=[TokenLedgerEntry("s", "m", TokenUsage(1, 1, 1, 1))],
                committed_attachment_ids=["att"],
            ).with_session_execution_lease(fence),
            BackendError,
        ),
    ]
    for commit, error in cases:
        with pytest.raises(error):
            await store.commit_runtime_state(
                leased(commit, held) if commit.session_execution_lease else commit
            )
        assert snapshot() == before, error.__name__
    head = await store.load_session_head_meta()
    assert head is not None and head.head_revision == 1
    # The fence is still live after all those refusals (no release was applied).
    assert (await store.commit_runtime_state(leased(minimal("alpha"), held))).head_revision == 2


async def test_commit_rules_that_follow(store: AsyncRedisStore) -> None:
    """§2.3 "rules that follow": fences are not consumed, unstamped retries apply again, hashes are opaque."""
    held = await lease(store, "root", "w")
    usage = [TokenLedgerEntry("turn", "m", TokenUsage(1, 2, 3, 4))]
    blind = minimal("root", usage_deltas=usage).with_session_execution_lease(held.fence())
    assert [(await store.commit_runtime_state(blind)).head_revision for _ in range(3)] == [1, 2, 3]
    read = await store.load_session(FullGraph())
    assert read is not None and read.token_ledger == [TokenLedgerEntry("turn", "m", TokenUsage(3, 6, 9, 12))]
    # The store compares stamp hashes as strings and never recomputes them.
    odd = minimal("root", turn_index=7).with_turn_commit(
        RuntimeTurnCommitStamp("root", "odd", "not a hash ✓")
    )
    first = await store.commit_runtime_state(odd.with_session_execution_lease(held.fence()))
    assert first.head_revision == 4
    # The stored result is returned after the head has moved on.
    assert (await store.commit_runtime_state(blind)).head_revision == 5
    replay = await store.commit_runtime_state(odd)
    assert replay == first and replay.manifest.turn_state.turn_index == 7
    head = await store.load_session_head_meta()
    assert head is not None and head.head_revision == 5
    # Turn ids are per session id: the same turn id with another hash conflicts, a new turn id applies.
    other = minimal("root", turn_index=8).with_turn_commit(
        RuntimeTurnCommitStamp("root", "odd", "other hash")
    )
    with pytest.raises(RuntimeTurnCommitConflict):
        await store.commit_runtime_state(other.with_session_execution_lease(held.fence()))
    fresh = other.with_turn_commit(RuntimeTurnCommitStamp("root", "odd-2", "other hash"))
    assert (
        await store.commit_runtime_state(fresh.with_session_execution_lease(held.fence()))
    ).head_revision == 6


async def test_no_head_means_no_session_whatever_else_is_stored(store: AsyncRedisStore) -> None:
    """§2.5: load_session and load_session_head_meta are None until the first commit."""
    await store.save_session_meta(SessionMeta("root", "n", "t", "m"))
    await lease(store, "root", "w")
    await store.enqueue_queued_work(draft("root", "q", EARLIEST, EXCL))
    await store.record_intent(AttachmentIntent("att", "root", "uri", 1))
    assert await store.load_session(FullGraph()) is None
    assert await store.load_session(ActivePath("x")) is None
    assert await store.load_session_head_meta() is None
    assert await store.load_node("x") is None
    info = await store.load_picker_info()
    assert info is not None and info.user_message_count == 0 and info.first_user_message == ""
