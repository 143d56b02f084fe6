"""Durable queued work: contract §3 scenarios C6 step 9, C9-C17 and S20-S30, plus a reference-model check.

Every test runs against real Redis through the ``backend`` fixture (standalone and the 3-primary cluster).
Time-dependent scenarios use an injected clock (no sleeping). "Nothing applied" is asserted with DUMP
snapshots of every key under the test's prefix.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from builders import Clock, draft, leased, minimal, text
from redisbed import Backend

from sessionfence import (
    AsyncRedisStore,
    DeliveryPolicy,
    FullGraph,
    MergeKey,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    QueuedWorkClaimExpired,
    RedisStore,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    SessionExecutionLeaseExpired,
    SlotPolicy,
)

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
AFTER = DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT
JOIN = SlotPolicy.JOIN
EXCL = SlotPolicy.EXCLUSIVE
IDLE = QueuedWorkClaimBoundary.IDLE
ACTIVE = QueuedWorkClaimBoundary.ACTIVE_TURN_CHECKPOINT
BATCH_ID = re.compile(r"^qwb:[0-9a-f]{64}$")


# ---- fixtures and helpers ----------------------------------------------------------------------------------


def ids(items: Any) -> list[str]:
    return [x.batch_id for x in items]


async def lease(store: AsyncRedisStore, sid: str, owner: str, ttl: int = 60_000) -> SessionExecutionLease:
    granted = await store.try_claim_session_execution_lease(sid, owner, ttl)
    assert granted is not None, f"lease({sid!r}, {owner!r}) was refused"
    return granted


async def claim(
    store: AsyncRedisStore, sid: str, lease_: SessionExecutionLease, owner: str,
    boundary: QueuedWorkClaimBoundary,
    max_batches: int, ttl: int = 60_000,
) -> QueuedWorkClaim | None:
    return await store.claim_ready_queued_work(sid, lease_.fence(), owner, boundary, ttl, max_batches)


async def fresh_claim(
    store: AsyncRedisStore, sid: str, owner: str, boundary: QueuedWorkClaimBoundary, max_batches: int,
    ttl: int = 60_000,
) -> QueuedWorkClaim | None:
    """Contract §3.0 "under a fresh lease": lease, claim, release."""
    granted = await lease(store, sid, owner)
    try:
        return await claim(store, sid, granted, owner, boundary, max_batches, ttl)
    finally:
        await store.release_session_execution_lease(granted.completion())


async def fresh_exact(
    store: AsyncRedisStore, sid: str, owner: str, batch_ids: list[str], ttl: int = 60_000
) -> QueuedWorkClaim | None:
    granted = await lease(store, sid, owner)
    try:
        return await store.claim_ready_queued_work_by_batch_ids(
            sid, granted.fence(), owner, IDLE, ttl, batch_ids
        )
    finally:
        await store.release_session_execution_lease(granted.completion())


async def complete(store: AsyncRedisStore, *claims: QueuedWorkClaim, owner: str = "committer") -> int:
    """A leased commit of ``minimal`` completing the claims; returns the new head revision."""
    granted = await lease(store, claims[0].session_id, owner)
    commit = minimal(claims[0].session_id).completing_queue_claims([c.completion() for c in claims])
    return (await store.commit_runtime_state(leased(commit, granted))).head_revision


def wake_draft(sid: str) -> QueuedWorkBatchDraft:
    return QueuedWorkBatchDraft(
        session_id=sid,
        source_key="process:process-1:event:7:wake",
        delivery_policy=EARLIEST,
        slot_policy=EXCL,
        payloads=[
            {
                "type": "process_wake",
                "wake": {"wake_id": "wake-1", "process_id": "process-1", "sequence": 7, "reason": "exited"},
            }
        ],
    )


# ---- C6 step 9 ---------------------------------------------------------------------------------------------


async def test_C6_step9_queue_claims_are_fenced_by_the_session_lease(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    cl = await lease(store, "root", "commit-owner")
    await store.commit_runtime_state(leased(minimal("root"), cl))  # releases cl
    batch = await store.enqueue_queued_work(draft("root", "fenced queue", EARLIEST, EXCL))
    before = snapshot()
    with pytest.raises(SessionExecutionLeaseExpired) as info:
        await claim(store, "root", cl, "queue-owner", IDLE, 1)
    assert info.value.session_id == "root"
    assert snapshot() == before
    # The same refusal for the exact claim.
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.claim_ready_queued_work_by_batch_ids("root", cl.fence(), "queue-owner", IDLE, 60_000,
                                                         [batch.batch_id])
    assert snapshot() == before
    fresh = await lease(store, "root", "queue-owner")
    got = await claim(store, "root", fresh, "queue-owner", IDLE, 1)
    assert got is not None
    assert ids(got.batches) == [batch.batch_id]
    assert got.batches[0] == batch
    assert got.owner_id == "queue-owner"
    await store.release_session_execution_lease(fresh.completion())


# ---- C9 ----------------------------------------------------------------------------------------------------


async def test_C9_source_keys_are_idempotent_and_lists_ordered(store: AsyncRedisStore) -> None:
    first = await store.enqueue_queued_work(draft("root", "first", EARLIEST, JOIN, source="source:first"))
    replay = await store.enqueue_queued_work(
        draft("root", "different replay payload", EARLIEST, JOIN, source="source:first")
    )
    second = await store.enqueue_queued_work(draft("root", "second", EARLIEST, EXCL))
    other = await store.enqueue_queued_work(draft("other", "other session", EARLIEST, EXCL))
    assert replay.batch_id == first.batch_id
    assert replay.items[0].item_id == first.items[0].item_id
    assert text(replay) == "first"
    assert replay == first  # returned unchanged, including its sequence and enqueue time
    assert first.source_key == "source:first" and second.source_key is None
    listed = await store.list_queued_work("root")
    assert ids(listed) == [first.batch_id, second.batch_id]
    assert listed[0] == first and listed[1] == second
    assert listed[0].enqueue_seq < listed[1].enqueue_seq
    # The deduplicated enqueue used no sequence value.
    assert (first.enqueue_seq, second.enqueue_seq, other.enqueue_seq) == (1, 2, 3)
    assert ids(await store.list_queued_work("other")) == [other.batch_id]
    assert await store.list_queued_work("nobody") == []


# ---- C10 ---------------------------------------------------------------------------------------------------


async def test_C10_cancel_removes_only_unclaimed_batches(store: AsyncRedisStore) -> None:
    c = await store.enqueue_queued_work(draft("root", "cancel me", AFTER, EXCL))
    cancelled = await store.cancel_queued_work_batch("root", c.batch_id)
    assert cancelled is not None
    assert text(cancelled) == "cancel me"
    assert cancelled == c
    assert await store.list_queued_work("root") == []
    assert await store.cancel_queued_work_batch("root", c.batch_id) is None
    k = await store.enqueue_queued_work(draft("root", "claimed", AFTER, EXCL))
    got = await fresh_claim(store, "root", "owner", IDLE, 1)
    assert got is not None and ids(got.batches) == [k.batch_id]
    assert await store.list_pending_queued_work("root") == []
    assert ids(await store.list_queued_work("root")) == [k.batch_id]
    assert await store.cancel_queued_work_batch("root", k.batch_id) is None
    await store.abandon_queued_work_claim(got)
    assert ids(await store.list_pending_queued_work("root")) == [k.batch_id]
    again = await store.cancel_queued_work_batch("root", k.batch_id)
    assert again is not None and again.batch_id == k.batch_id and text(again) == "claimed"
    assert await store.list_queued_work("root") == []


# ---- C11 ---------------------------------------------------------------------------------------------------


async def test_C11_exact_claims_use_the_selected_ids(store: AsyncRedisStore) -> None:
    first = await store.enqueue_queued_work(draft("root", "first", AFTER, EXCL))
    second = await store.enqueue_queued_work(draft("root", "second", AFTER, EXCL))
    assert await fresh_exact(store, "root", "owner", [second.batch_id]) is None
    assert ids(await store.list_pending_queued_work("root")) == [first.batch_id, second.batch_id]
    got = await fresh_exact(store, "root", "owner", [first.batch_id])
    assert got is not None
    assert ids(got.batches) == [first.batch_id]
    assert ids(await store.list_pending_queued_work("root")) == [second.batch_id]
    # The rejected attempt advanced `first`'s counter: this claim reports 2.
    assert got.fencing_token == 2
    assert got.claim_id == f"qwc:{first.enqueue_seq}:2"


# ---- C12 ---------------------------------------------------------------------------------------------------


async def test_C12_boundaries_renewal_and_abandon(store: AsyncRedisStore) -> None:
    a = await store.enqueue_queued_work(draft("root", "after current commit", AFTER, EXCL))
    e = await store.enqueue_queued_work(draft("root", "earliest", EARLIEST, EXCL))
    assert await fresh_claim(store, "root", "owner-a", ACTIVE, 10) is None
    idle = await fresh_claim(store, "root", "owner-a", IDLE, 10)
    assert idle is not None and ids(idle.batches) == [a.batch_id]
    active = await fresh_claim(store, "root", "owner-b", ACTIVE, 10)
    assert active is not None and ids(active.batches) == [e.batch_id]
    assert active.owner_id == "owner-b"
    await store.abandon_queued_work_claim(idle)
    again = await fresh_claim(store, "root", "owner-c", IDLE, 10)
    assert again is not None and ids(again.batches) == [a.batch_id]
    assert again.fencing_token > idle.fencing_token
    assert again.lease_token != idle.lease_token
    renewed = await store.renew_queued_work_claim(again, 60_000)
    assert renewed.claim_id == again.claim_id
    assert renewed.lease_token == again.lease_token
    assert ids(renewed.batches) == ids(again.batches)
    assert renewed.expires_at_epoch_ms >= again.expires_at_epoch_ms
    assert renewed.model_copy(update={"expires_at_epoch_ms": again.expires_at_epoch_ms}) == again


# ---- C13 ---------------------------------------------------------------------------------------------------


async def test_C13_availability_limits_exclusivity_reclaim_and_sessions(store: AsyncRedisStore) -> None:
    not_ready = await store.enqueue_queued_work(
        draft("root", "not ready", EARLIEST, EXCL, available=4_102_444_800_000)
    )
    x = await store.enqueue_queued_work(draft("root", "exclusive", EARLIEST, EXCL))
    j = await store.enqueue_queued_work(draft("root", "joined", EARLIEST, JOIN, merge=MergeKey.group("root")))
    o = await store.enqueue_queued_work(draft("other", "other session", EARLIEST, EXCL))
    assert not_ready.available_at_ms == 4_102_444_800_000
    got = await fresh_claim(store, "root", "owner", IDLE, 10)
    assert got is not None and ids(got.batches) == [x.batch_id]
    got = await fresh_claim(store, "root", "owner", IDLE, 10)
    assert got is not None and ids(got.batches) == [j.batch_id]
    got = await fresh_claim(store, "other", "owner", IDLE, 10)
    assert got is not None and ids(got.batches) == [o.batch_id]
    assert await fresh_claim(store, "root", "owner", IDLE, 10) is None
    assert ids(await store.list_pending_queued_work("root")) == [not_ready.batch_id]

    r = await store.enqueue_queued_work(draft("reclaim", "expired claim", EARLIEST, EXCL))
    first = await fresh_claim(store, "reclaim", "owner-a", IDLE, 1, ttl=0)
    assert first is not None and ids(first.batches) == [r.batch_id]
    assert first.expires_at_epoch_ms == first.claimed_at_epoch_ms
    second = await fresh_claim(store, "reclaim", "owner-b", IDLE, 10)
    assert second is not None and ids(second.batches) == [r.batch_id]
    assert second.fencing_token > first.fencing_token

    limited = [
        await store.enqueue_queued_work(draft("limited", t, EARLIEST, JOIN, merge=MergeKey.group("limited")))
        for t in ("one", "two", "three")
    ]
    got = await fresh_claim(store, "limited", "owner", IDLE, 2)
    assert got is not None and [text(b) for b in got.batches] == ["one", "two"]
    assert ids(got.batches) == ids(limited[:2])
    got = await fresh_claim(store, "limited", "owner", IDLE, 10)
    assert got is not None and [text(b) for b in got.batches] == ["three"]


# ---- C14 ---------------------------------------------------------------------------------------------------


async def test_C14_join_groups_by_delivery_policy_and_merge_key(store: AsyncRedisStore) -> None:
    ga, gb = MergeKey.group("a"), MergeKey.group("b")
    a1 = await store.enqueue_queued_work(draft("root", "group a one", EARLIEST, JOIN, merge=ga))
    a2 = await store.enqueue_queued_work(draft("root", "group a two", EARLIEST, JOIN, merge=ga))
    b = await store.enqueue_queued_work(draft("root", "group b", EARLIEST, JOIN, merge=gb))
    ac = await store.enqueue_queued_work(draft("root", "after commit", AFTER, JOIN, merge=ga))
    results = [await fresh_claim(store, "root", "owner", IDLE, 10) for _ in range(3)]
    assert [ids(c.batches) if c else None for c in results] == [
        [a1.batch_id, a2.batch_id], [b.batch_id], [ac.batch_id]
    ]
    assert await fresh_claim(store, "root", "owner", IDLE, 10) is None


# ---- C15 ---------------------------------------------------------------------------------------------------


async def test_C15_completion_is_claim_guarded(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    j1 = await store.enqueue_queued_work(draft("root", "j1", EARLIEST, JOIN, merge=MergeKey.group("joined")))
    j2 = await store.enqueue_queued_work(draft("root", "j2", EARLIEST, JOIN, merge=MergeKey.group("joined")))
    held = await lease(store, "root", "owner-a")
    got = await claim(store, "root", held, "owner-a", IDLE, 10)
    assert got is not None and ids(got.batches) == [j1.batch_id, j2.batch_id]
    stale = got.completion().model_copy(update={"lease_token": got.lease_token + ":stale"})
    before = snapshot()
    with pytest.raises(QueuedWorkClaimExpired) as info:
        await store.commit_runtime_state(
            minimal("root").with_session_execution_lease(held.fence()).completing_queue_claim(stale)
        )
    assert (info.value.session_id, info.value.claim_id) == ("root", got.claim_id)
    assert snapshot() == before
    assert len(await store.list_queued_work("root")) == 2
    assert await store.load_session(FullGraph()) is None
    result = await store.commit_runtime_state(
        leased(minimal("root"), held).completing_queue_claim(got.completion())
    )
    assert result.head_revision == 1
    assert await store.list_queued_work("root") == []
    # The commit released the session lease and forgot the claim: it can neither renew nor complete again.
    after = await lease(store, "root", "owner-b")
    with pytest.raises(QueuedWorkClaimExpired):
        await store.renew_queued_work_claim(got, 60_000)
    with pytest.raises(QueuedWorkClaimExpired):
        await store.commit_runtime_state(
            minimal("root").with_session_execution_lease(after.fence()).completing_queue_claim(got.completion())
        )


# ---- C16 ---------------------------------------------------------------------------------------------------


async def test_C16_wake_delivery_is_source_key_idempotent_and_claimed_once(store: AsyncRedisStore) -> None:
    one = await store.enqueue_queued_work(wake_draft("root"))
    two = await store.enqueue_queued_work(wake_draft("root"))
    assert one.batch_id == two.batch_id
    assert len(await store.list_queued_work("root")) == 1
    held = await lease(store, "root", "wake-owner")
    got = await claim(store, "root", held, "wake-owner", IDLE, 10)
    assert got is not None and len(got.batches) == 1 and len(got.batches[0].items) == 1
    assert got.batches[0].items[0].payload["type"] == "process_wake"
    assert got.batches[0].items[0].payload == wake_draft("root").payloads[0]
    assert got.batches[0].items[0].item_id == f"{one.batch_id}:item:0"
    assert await claim(store, "root", held, "wake-owner", IDLE, 10) is None  # claimed once
    await store.commit_runtime_state(leased(minimal("root"), held).completing_queue_claim(got.completion()))
    assert await store.list_queued_work("root") == []
    # The source key is free again once the batch is gone.
    three = await store.enqueue_queued_work(wake_draft("root"))
    assert three.batch_id != one.batch_id and three.enqueue_seq > one.enqueue_seq


# ---- C17 ---------------------------------------------------------------------------------------------------


async def test_C17_queue_completion_and_turn_stamp_are_atomic(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await store.enqueue_queued_work(draft("root", "atomic queue", EARLIEST, EXCL))
    held = await lease(store, "root", "queue-owner")
    got = await claim(store, "root", held, "queue-owner", IDLE, 1)
    assert got is not None
    base = minimal("root", turn_index=41)
    stamp = RuntimeTurnCommitStamp("root", "turn-atomic", base.turn_commit_hash())
    stale = got.completion().model_copy(update={"lease_token": got.lease_token + ":stale"})
    before = snapshot()
    with pytest.raises(QueuedWorkClaimExpired):
        await store.commit_runtime_state(
            base.with_session_execution_lease(held.fence()).with_turn_commit(stamp).completing_queue_claim(stale)
        )
    assert snapshot() == before
    assert await store.load_session(FullGraph()) is None
    assert len(await store.list_queued_work("root")) == 1
    good = leased(base, held).with_turn_commit(stamp).completing_queue_claim(got.completion())
    first = await store.commit_runtime_state(good)
    again = await store.commit_runtime_state(good)
    assert (again.head_revision, again.checkpoint_ref) == (first.head_revision, first.checkpoint_ref)
    assert first.head_revision == 1
    read = await store.load_session(FullGraph())
    assert read is not None and read.head_revision == 1
    assert read.checkpoint is not None and read.checkpoint.turn_state.turn_index == 41
    assert await store.list_queued_work("root") == []


# ---- S20 ---------------------------------------------------------------------------------------------------


async def test_S20_enqueue_identity(store: AsyncRedisStore) -> None:
    ka = await store.enqueue_queued_work(draft("a", "k in a", EARLIEST, EXCL, source="k"))
    kb = await store.enqueue_queued_work(draft("b", "k in b", EARLIEST, EXCL, source="k"))
    assert ka.batch_id != kb.batch_id
    assert (ka.session_id, kb.session_id) == ("a", "b")
    two = await store.enqueue_queued_work(
        draft("a", "p0", EARLIEST, EXCL).model_copy(
            update={"payloads": [{"type": "x", "n": 0}, {"type": "x", "n": 1}]}
        )
    )
    assert [i.item_id for i in two.items] == [f"{two.batch_id}:item:0", f"{two.batch_id}:item:1"]
    assert [i.payload["n"] for i in two.items] == [0, 1]
    for batch in (ka, kb, two):
        assert BATCH_ID.match(batch.batch_id), batch.batch_id
        assert len(batch.batch_id) == 68
    # Completing the "k" batch of "a" frees the key: a new id with a larger sequence.
    got = await fresh_claim(store, "a", "owner", IDLE, 1)
    assert got is not None and ids(got.batches) == [ka.batch_id]
    await complete(store, got)
    ka2 = await store.enqueue_queued_work(draft("a", "k again", EARLIEST, EXCL, source="k"))
    assert ka2.batch_id != ka.batch_id and ka2.enqueue_seq > two.enqueue_seq and text(ka2) == "k again"
    # Cancelling the "k" batch of "b" frees that key too.
    assert await store.cancel_queued_work_batch("b", kb.batch_id) is not None
    kb2 = await store.enqueue_queued_work(draft("b", "k again in b", EARLIEST, EXCL, source="k"))
    assert kb2.batch_id != kb.batch_id and kb2.enqueue_seq > ka2.enqueue_seq
    # Cancelling the newest batch never lets its sequence be reused.
    assert await store.cancel_queued_work_batch("b", kb2.batch_id) is not None
    nxt = await store.enqueue_queued_work(draft("b", "next", EARLIEST, EXCL))
    assert nxt.enqueue_seq > max(b.enqueue_seq for b in (ka, kb, two, ka2, kb2))
    # Zero payloads: a batch with no items, whose claim is empty.
    empty = await store.enqueue_queued_work(
        draft("z", "unused", EARLIEST, EXCL).model_copy(update={"payloads": []})
    )
    assert empty.items == []
    got = await fresh_claim(store, "z", "owner", IDLE, 1)
    assert got is not None and ids(got.batches) == [empty.batch_id]
    assert got.is_empty()
    non_empty = await fresh_claim(store, "a", "owner", IDLE, 1)
    assert non_empty is not None and ids(non_empty.batches) == [two.batch_id]
    assert not non_empty.is_empty()


# ---- S21 ---------------------------------------------------------------------------------------------------


async def test_S21_held_batch_is_not_reclaimed(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    x = await store.enqueue_queued_work(draft("root", "held", EARLIEST, EXCL))
    held = await lease(store, "root", "session-owner")
    a = await claim(store, "root", held, "owner-a", IDLE, 10)
    assert a is not None and ids(a.batches) == [x.batch_id] and a.owner_id == "owner-a"
    before = snapshot()
    assert await claim(store, "root", held, "owner-b", IDLE, 10) is None
    assert await claim(store, "root", held, "owner-b", ACTIVE, 10) is None
    assert await store.claim_ready_queued_work_by_batch_ids(
        "root", held.fence(), "owner-b", IDLE, 60_000, [x.batch_id]
    ) is None
    assert snapshot() == before
    renewed = await store.renew_queued_work_claim(a, 120_000)
    assert renewed.claim_id == a.claim_id and renewed.expires_at_epoch_ms >= a.expires_at_epoch_ms


# ---- S22 ---------------------------------------------------------------------------------------------------


async def test_S22_concurrent_claimers(make_store: Callable[..., AsyncRedisStore]) -> None:
    a, b, c = make_store(), make_store(), make_store()
    held = await lease(a, "root", "session-owner")
    for round_ in range(10):
        batch = await a.enqueue_queued_work(draft("root", f"contended {round_}", EARLIEST, EXCL))
        gate = asyncio.Event()

        async def attempt(
            handle: AsyncRedisStore, owner: str, gate: asyncio.Event = gate
        ) -> QueuedWorkClaim | None:
            await gate.wait()
            return await handle.claim_ready_queued_work("root", held.fence(), owner, IDLE, 60_000, 10)

        tasks = [asyncio.create_task(attempt(a, "A")), asyncio.create_task(attempt(b, "B"))]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks)
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert ids(winners[0].batches) == [batch.batch_id]
        renewed = await c.renew_queued_work_claim(winners[0], 30_000)
        assert renewed.claim_id == winners[0].claim_id
        await c.commit_runtime_state(
            minimal("root").with_session_execution_lease(held.fence()).completing_queue_claim(renewed.completion())
        )
    assert await c.list_queued_work("root") == []


# ---- S23 ---------------------------------------------------------------------------------------------------


async def test_S23_skipped_rows_do_not_break_a_group(make_store: Callable[..., AsyncRedisStore]) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    g = MergeKey.group("g")
    j1 = await store.enqueue_queued_work(draft("root", "J1", EARLIEST, JOIN, merge=g))
    f = await store.enqueue_queued_work(draft("root", "F", EARLIEST, JOIN, merge=g, available=5000))
    j2 = await store.enqueue_queued_work(draft("root", "J2", EARLIEST, JOIN, merge=g))
    got = await fresh_claim(store, "root", "owner", IDLE, 10)
    assert got is not None and ids(got.batches) == [j1.batch_id, j2.batch_id]
    # A live-claimed row is skipped too: at 5000, F is claimed on its own past the held J1, J2.
    clock.now = 5000
    got_f = await fresh_claim(store, "root", "owner", IDLE, 10)
    assert got_f is not None and ids(got_f.batches) == [f.batch_id]

    n1 = await store.enqueue_queued_work(draft("never", "N1", EARLIEST, JOIN))
    n2 = await store.enqueue_queued_work(draft("never", "N2", EARLIEST, JOIN))
    got = await fresh_claim(store, "never", "owner", IDLE, 10)
    assert got is not None and ids(got.batches) == [n1.batch_id, n2.batch_id]

    j = await store.enqueue_queued_work(draft("mixed", "J", EARLIEST, JOIN))
    x = await store.enqueue_queued_work(draft("mixed", "X", EARLIEST, EXCL))
    first = await fresh_claim(store, "mixed", "owner", IDLE, 10)
    second = await fresh_claim(store, "mixed", "owner", IDLE, 10)
    assert first is not None and ids(first.batches) == [j.batch_id]
    assert second is not None and ids(second.batches) == [x.batch_id]

    # A group never mixes merge keys or delivery policies, even under IDLE.
    p1 = await store.enqueue_queued_work(draft("policy", "P1", EARLIEST, JOIN))
    p2 = await store.enqueue_queued_work(draft("policy", "P2", AFTER, JOIN))
    p3 = await store.enqueue_queued_work(draft("policy", "P3", AFTER, JOIN, merge=MergeKey.payload_default()))
    got = [await fresh_claim(store, "policy", "owner", IDLE, 10) for _ in range(3)]
    assert [ids(c.batches) if c else None for c in got] == [[p1.batch_id], [p2.batch_id], [p3.batch_id]]


# ---- S24 ---------------------------------------------------------------------------------------------------


async def test_S24_limits(store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]) -> None:
    batch = await store.enqueue_queued_work(draft("root", "limits", EARLIEST, EXCL))
    stale = await lease(store, "root", "stale")
    await store.release_session_execution_lease(stale.completion())
    before = snapshot()
    assert await claim(store, "root", stale, "owner", IDLE, 0) is None
    exact = await store.claim_ready_queued_work_by_batch_ids("root", stale.fence(), "owner", IDLE, 60_000, [])
    assert exact is None
    assert snapshot() == before
    with pytest.raises(SessionExecutionLeaseExpired):
        await claim(store, "root", stale, "owner", IDLE, 1)
    live = await lease(store, "root", "live")
    assert await claim(store, "root", live, "owner", IDLE, 0) is None
    got = await claim(store, "root", live, "owner", IDLE, 1)
    assert got is not None and ids(got.batches) == [batch.batch_id]
    assert got.fencing_token == 1
    assert got.claim_id == f"qwc:{batch.enqueue_seq}:1"


# ---- S25 ---------------------------------------------------------------------------------------------------


async def test_S25_exact_claim_order_and_counters(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    g = MergeKey.group("g")
    a = await store.enqueue_queued_work(draft("root", "A", EARLIEST, JOIN, merge=g))
    b = await store.enqueue_queued_work(draft("root", "B", EARLIEST, JOIN, merge=g))
    assert await fresh_exact(store, "root", "owner", [b.batch_id, a.batch_id]) is None
    assert ids(await store.list_pending_queued_work("root")) == [a.batch_id, b.batch_id]
    got = await fresh_exact(store, "root", "owner", [a.batch_id, b.batch_id])
    assert got is not None and ids(got.batches) == [a.batch_id, b.batch_id]
    assert got.fencing_token == 2  # the rejected attempt advanced A's counter
    assert await store.list_pending_queued_work("root") == []

    xa = await store.enqueue_queued_work(draft("excl", "A", EARLIEST, EXCL))
    xb = await store.enqueue_queued_work(draft("excl", "B", EARLIEST, EXCL))
    assert await fresh_exact(store, "excl", "owner", [xa.batch_id, xb.batch_id]) is None
    assert ids(await store.list_pending_queued_work("excl")) == [xa.batch_id, xb.batch_id]
    # A transient claim is never observable and leaves no claim record behind.
    held = await lease(store, "excl", "owner")
    before = snapshot()
    assert await store.claim_ready_queued_work_by_batch_ids(
        "excl", held.fence(), "owner", IDLE, 60_000, [xb.batch_id]
    ) is None
    after = snapshot()
    claims_key = store.keys.q_claims.encode()
    assert after.get(claims_key) == before.get(claims_key)
    got = await claim(store, "excl", held, "owner", IDLE, 1)
    assert got is not None and ids(got.batches) == [xa.batch_id]
    assert got.fencing_token == 3  # two rejected exact attempts selected A
    assert got.claim_id == f"qwc:{xa.enqueue_seq}:3"


async def test_S25_exact_claim_next_ordinary_claim_has_fencing_2(store: AsyncRedisStore) -> None:
    """S25 exactly as written: one rejected exact claim, then the ordinary claim reports fencing 2."""
    xa = await store.enqueue_queued_work(draft("root", "A", EARLIEST, EXCL))
    xb = await store.enqueue_queued_work(draft("root", "B", EARLIEST, EXCL))
    assert await fresh_exact(store, "root", "owner", [xa.batch_id, xb.batch_id]) is None
    assert ids(await store.list_pending_queued_work("root")) == [xa.batch_id, xb.batch_id]
    got = await fresh_claim(store, "root", "owner", IDLE, 1)
    assert got is not None and ids(got.batches) == [xa.batch_id]
    assert got.fencing_token == 2
    assert got.claim_id == f"qwc:{xa.enqueue_seq}:2"
    nxt = await fresh_claim(store, "root", "owner", IDLE, 1)
    assert nxt is not None and ids(nxt.batches) == [xb.batch_id] and nxt.fencing_token == 1


# ---- S26 ---------------------------------------------------------------------------------------------------


async def test_S26_per_batch_counters(store: AsyncRedisStore) -> None:
    g = MergeKey.group("g")
    j1 = await store.enqueue_queued_work(draft("root", "J1", EARLIEST, JOIN, merge=g))
    j2 = await store.enqueue_queued_work(draft("root", "J2", EARLIEST, JOIN, merge=g))
    held = await lease(store, "root", "owner")
    seen = []
    for max_batches in (1, 1, 10):
        got = await claim(store, "root", held, "owner", IDLE, max_batches)
        assert got is not None
        seen.append((ids(got.batches), got.fencing_token, got.claim_id))
        await store.abandon_queued_work_claim(got)
    kept = await claim(store, "root", held, "owner", IDLE, 1)
    assert kept is not None
    nxt = await claim(store, "root", held, "owner", IDLE, 10)
    assert nxt is not None
    seen += [(ids(kept.batches), kept.fencing_token, kept.claim_id), (ids(nxt.batches), nxt.fencing_token,
                                                                      nxt.claim_id)]
    s1, s2 = j1.enqueue_seq, j2.enqueue_seq
    assert seen == [
        ([j1.batch_id], 1, f"qwc:{s1}:1"),
        ([j1.batch_id], 2, f"qwc:{s1}:2"),
        ([j1.batch_id, j2.batch_id], 3, f"qwc:{s1}:3"),
        ([j1.batch_id], 4, f"qwc:{s1}:4"),
        ([j2.batch_id], 2, f"qwc:{s2}:2"),
    ]


# ---- S27 ---------------------------------------------------------------------------------------------------


async def test_S27_renewal_revives_and_is_all_or_nothing(
    make_store: Callable[..., AsyncRedisStore], snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    g = MergeKey.group("g")
    j1 = await store.enqueue_queued_work(draft("root", "J1", EARLIEST, JOIN, merge=g))
    j2 = await store.enqueue_queued_work(draft("root", "J2", EARLIEST, JOIN, merge=g))
    got = await fresh_claim(store, "root", "owner", IDLE, 10, ttl=100)
    assert got is not None and ids(got.batches) == [j1.batch_id, j2.batch_id]
    assert (got.claimed_at_epoch_ms, got.expires_at_epoch_ms) == (1000, 1100)
    clock.now = 1200
    assert ids(await store.list_pending_queued_work("root")) == [j1.batch_id, j2.batch_id]
    renewed = await store.renew_queued_work_claim(got, 100)
    assert renewed.expires_at_epoch_ms == 1300
    assert renewed.claimed_at_epoch_ms == 1000
    assert renewed.model_copy(update={"expires_at_epoch_ms": 1100}) == got
    assert await store.list_pending_queued_work("root") == []
    assert await fresh_claim(store, "root", "other", IDLE, 10) is None  # revived: nobody may take it
    clock.now = 1400
    assert await store.cancel_queued_work_batch("root", j2.batch_id) is not None
    before = snapshot()
    with pytest.raises(QueuedWorkClaimExpired) as info:
        await store.renew_queued_work_claim(renewed, 100)
    assert (info.value.session_id, info.value.claim_id) == ("root", got.claim_id)
    assert snapshot() == before
    assert ids(await store.list_pending_queued_work("root")) == [j1.batch_id]
    again = await fresh_claim(store, "root", "other", IDLE, 10)
    assert again is not None and ids(again.batches) == [j1.batch_id] and again.fencing_token == 2


async def test_S27_renewal_after_a_claim_promoted_the_lapsed_batches(
    make_store: Callable[..., AsyncRedisStore],
) -> None:
    """A lapsed claim that another claim call moved back to the ready index is still revived by renew."""
    clock = Clock(1000)
    store = make_store(clock=clock)
    j1 = await store.enqueue_queued_work(draft("root", "J1", AFTER, EXCL))
    got = await fresh_claim(store, "root", "owner", IDLE, 10, ttl=100)
    assert got is not None
    clock.now = 1200
    # An ACTIVE_TURN_CHECKPOINT claim sees J1 ready again but the head-of-line gate refuses it.
    assert await fresh_claim(store, "root", "other", ACTIVE, 10) is None
    renewed = await store.renew_queued_work_claim(got, 500)
    assert renewed.expires_at_epoch_ms == 1700
    assert await fresh_claim(store, "root", "other", IDLE, 10) is None
    clock.now = 1700
    taken = await fresh_claim(store, "root", "other", IDLE, 10)
    assert taken is not None and ids(taken.batches) == [j1.batch_id] and taken.fencing_token == 2
    # Renewing with ttl 0 makes the batch claimable at once.
    zero = await store.renew_queued_work_claim(taken, 0)
    assert zero.expires_at_epoch_ms == 1700
    assert ids(await store.list_pending_queued_work("root")) == [j1.batch_id]
    third = await fresh_claim(store, "root", "third", IDLE, 10)
    assert third is not None and third.fencing_token == 3


# ---- S28 ---------------------------------------------------------------------------------------------------


async def test_S28_completion_exactness(
    make_store: Callable[..., AsyncRedisStore], snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    g = MergeKey.group("g")
    b1 = await store.enqueue_queued_work(draft("root", "B1", EARLIEST, JOIN, merge=g))
    b2 = await store.enqueue_queued_work(draft("root", "B2", EARLIEST, JOIN, merge=g))
    held = await lease(store, "root", "owner")
    got = await claim(store, "root", held, "owner", IDLE, 2)
    assert got is not None and ids(got.batches) == [b1.batch_id, b2.batch_id]
    b3 = await store.enqueue_queued_work(draft("root", "B3", EARLIEST, JOIN, merge=g))
    base = minimal("root").with_session_execution_lease(held.fence())
    good = got.completion()
    forged = {
        "subset": good.model_copy(update={"batch_ids": [b1.batch_id]}),
        "superset": good.model_copy(update={"batch_ids": [b1.batch_id, b2.batch_id, b3.batch_id]}),
        "duplicate": good.model_copy(update={"batch_ids": [b1.batch_id, b1.batch_id]}),
        "other session": good.model_copy(update={"session_id": "other"}),
        "unknown batch": good.model_copy(update={"batch_ids": [b1.batch_id, "qwb:" + "0" * 64]}),
        "wrong claim id": good.model_copy(update={"claim_id": f"qwc:{b1.enqueue_seq}:2"}),
    }
    before = snapshot()
    for name, completion in forged.items():
        with pytest.raises(QueuedWorkClaimExpired) as info:
            await store.commit_runtime_state(base.completing_queue_claim(completion))
        assert info.value.claim_id == completion.claim_id, name
        assert info.value.session_id == completion.session_id, name
        # One bad completion next to a good one still refuses the whole commit.
        with pytest.raises(QueuedWorkClaimExpired):
            await store.commit_runtime_state(base.completing_queue_claims([good, completion]))
        assert snapshot() == before, name
    assert await store.load_session(FullGraph()) is None
    # The same completion listed twice in one commit is accepted.
    result = await store.commit_runtime_state(base.completing_queue_claims([good, good]))
    assert result.head_revision == 1
    assert ids(await store.list_queued_work("root")) == [b3.batch_id]
    # A ttl-0 claim nobody re-claimed still completes, even after time moved on.
    zero = await claim(store, "root", held, "owner", IDLE, 1, ttl=0)
    assert zero is not None and zero.expires_at_epoch_ms == zero.claimed_at_epoch_ms == 1000
    clock.now = 5000
    assert ids(await store.list_pending_queued_work("root")) == [b3.batch_id]
    result = await store.commit_runtime_state(base.completing_queue_claim(zero.completion()))
    assert result.head_revision == 2
    assert await store.list_queued_work("root") == []


async def test_S28_reclaimed_claim_cannot_complete(
    make_store: Callable[..., AsyncRedisStore], snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    await store.enqueue_queued_work(draft("root", "B", EARLIEST, EXCL))
    held = await lease(store, "root", "owner", ttl=10**9)
    first = await claim(store, "root", held, "w1", IDLE, 1, ttl=0)
    second = await claim(store, "root", held, "w2", IDLE, 1)
    assert first is not None and second is not None and second.fencing_token == 2
    base = minimal("root").with_session_execution_lease(held.fence())
    before = snapshot()
    with pytest.raises(QueuedWorkClaimExpired):
        await store.commit_runtime_state(base.completing_queue_claim(first.completion()))
    assert snapshot() == before
    await store.abandon_queued_work_claim(second)
    with pytest.raises(QueuedWorkClaimExpired):
        await store.commit_runtime_state(base.completing_queue_claim(second.completion()))
    third = await claim(store, "root", held, "w3", IDLE, 1)
    assert third is not None
    assert await store.cancel_queued_work_batch("root", third.batches[0].batch_id) is None
    await store.commit_runtime_state(base.completing_queue_claim(third.completion()))
    assert await store.list_queued_work("root") == []


# ---- S29 ---------------------------------------------------------------------------------------------------


async def test_S29_cancel_scope(store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]) -> None:
    x = await store.enqueue_queued_work(draft("root", "X", EARLIEST, EXCL, source="src"))
    before = snapshot()
    assert await store.cancel_queued_work_batch("other", x.batch_id) is None
    assert await store.cancel_queued_work_batch("root", "missing") is None
    assert await store.cancel_queued_work_batch("root", "") is None
    assert snapshot() == before
    assert ids(await store.list_queued_work("root")) == [x.batch_id]
    # Availability is irrelevant to cancel.
    later = await store.enqueue_queued_work(draft("root", "later", EARLIEST, EXCL, available=2**62))
    assert (await store.cancel_queued_work_batch("root", later.batch_id)) == later
    # The dedup entry goes with the batch.
    assert await store.cancel_queued_work_batch("root", x.batch_id) == x
    again = await store.enqueue_queued_work(draft("root", "X again", EARLIEST, EXCL, source="src"))
    assert again.batch_id != x.batch_id


# ---- S30 ---------------------------------------------------------------------------------------------------


async def test_S30_list_versus_pending(make_store: Callable[..., AsyncRedisStore]) -> None:
    clock = Clock(1000)
    store = make_store(clock=clock)
    f = await store.enqueue_queued_work(draft("root", "F", EARLIEST, EXCL, available=9000))
    c = await store.enqueue_queued_work(draft("root", "C", EARLIEST, EXCL))
    p = await store.enqueue_queued_work(draft("root", "P", EARLIEST, EXCL))
    assert c.enqueued_at_ms == 1000 and f.available_at_ms == 9000
    got = await fresh_claim(store, "root", "owner", IDLE, 1, ttl=100)
    assert got is not None and ids(got.batches) == [c.batch_id]
    assert await store.list_queued_work("root") == [f, c, p]
    assert ids(await store.list_pending_queued_work("root")) == [f.batch_id, p.batch_id]
    clock.now = 1099
    assert ids(await store.list_pending_queued_work("root")) == [f.batch_id, p.batch_id]
    clock.now = 1100
    assert await store.list_pending_queued_work("root") == [f, c, p]
    assert await store.list_queued_work("root") == [f, c, p]


# ---- sync twin ---------------------------------------------------------------------------------------------


def test_sync_twin_queue_flow(backend: Backend, namespace: str, key_prefix: str) -> None:
    """The blocking twin runs the same scripts: enqueue, dedup, claim, renew, abandon, exact claim, commit."""
    store = RedisStore(backend.sync_client(), namespace, key_prefix=key_prefix)
    g = MergeKey.group("g")
    a = store.enqueue_queued_work(draft("root", "A", EARLIEST, JOIN, merge=g, source="s"))
    assert store.enqueue_queued_work(draft("root", "A2", EARLIEST, JOIN, merge=g, source="s")) == a
    b = store.enqueue_queued_work(draft("root", "B", EARLIEST, JOIN, merge=g))
    held = store.try_claim_session_execution_lease("root", "owner", 60_000)
    assert held is not None
    got = store.claim_ready_queued_work("root", held.fence(), "owner", IDLE, 60_000, 10)
    assert got is not None and ids(got.batches) == [a.batch_id, b.batch_id]
    assert store.renew_queued_work_claim(got, 1_000).claim_id == got.claim_id
    store.abandon_queued_work_claim(got)
    assert store.claim_ready_queued_work_by_batch_ids("root", held.fence(), "owner", IDLE, 60_000, []) is None
    exact = store.claim_ready_queued_work_by_batch_ids(
        "root", held.fence(), "owner", IDLE, 60_000, [a.batch_id, b.batch_id]
    )
    assert exact is not None and exact.fencing_token == 2
    assert store.list_pending_queued_work("root") == []
    assert store.list_queued_work("root") == [a, b]
    assert store.cancel_queued_work_batch("root", a.batch_id) is None
    store.commit_runtime_state(leased(minimal("root"), held).completing_queue_claim(exact.completion()))
    assert store.list_queued_work("root") == []


# ---- reference model: 2,000 mixed batches ------------------------------------------------------------------


@dataclass
class ModelBatch:
    batch: QueuedWorkBatch
    fencing: int = 0
    claim_id: str | None = None
    token: str | None = None
    expires: int = 0

    def ready(self, now: int) -> bool:
        claimable = self.claim_id is None or self.expires <= now
        return claimable and self.batch.available_at_ms <= now


class QueueModel:
    """Contract §2.7-§2.10 over one session, written straight from the text."""

    def __init__(self) -> None:
        self.batches: dict[str, ModelBatch] = {}

    def ordered(self) -> list[ModelBatch]:
        return sorted(self.batches.values(), key=lambda m: m.batch.enqueue_seq)

    def select(self, now: int, boundary: QueuedWorkClaimBoundary, max_batches: int) -> list[ModelBatch]:
        candidates = [m for m in self.ordered() if m.ready(now)]
        if not candidates or max_batches == 0:
            return []
        head = candidates[0].batch
        if boundary is ACTIVE and head.delivery_policy is not EARLIEST:
            return []
        if head.slot_policy is EXCL:
            return candidates[:1]
        out = [candidates[0]]
        for m in candidates[1:]:
            b = m.batch
            if len(out) >= max_batches:
                break
            joins = b.slot_policy is JOIN and b.delivery_policy is head.delivery_policy
            if joins and b.merge_key == head.merge_key:
                out.append(m)
            else:
                break
        return out

    def take(self, selected: list[ModelBatch], claim_: QueuedWorkClaim) -> None:
        for m in selected:
            m.fencing += 1
            m.claim_id, m.token, m.expires = claim_.claim_id, claim_.lease_token, claim_.expires_at_epoch_ms

    def carriers(self, c: QueuedWorkClaim) -> list[ModelBatch]:
        return [m for m in self.batches.values() if m.claim_id == c.claim_id and m.token == c.lease_token]

    def pending(self, now: int) -> list[str]:
        return [m.batch.batch_id for m in self.ordered() if m.claim_id is None or m.expires <= now]


async def test_claim_prefix_matches_reference_model_over_2000_mixed_batches(
    make_store: Callable[..., AsyncRedisStore],
) -> None:
    rng = random.Random(20260622)
    clock = Clock(10_000)
    store = make_store(clock=clock)
    model = QueueModel()
    groups = [MergeKey.never(), MergeKey.payload_default(), MergeKey.group("a"), MergeKey.group("b")]
    for n in range(2_000):
        roll = rng.random()
        available = 0 if roll < 0.5 else clock.now + rng.randrange(0, 40_000)
        d = draft(
            "root", f"b{n}", EARLIEST if rng.random() < 0.7 else AFTER, JOIN if rng.random() < 0.85 else EXCL,
            merge=rng.choice(groups[:2] if rng.random() < 0.6 else groups), available=available,
        )
        batch = await store.enqueue_queued_work(d)
        assert batch.enqueue_seq == n + 1
        model.batches[batch.batch_id] = ModelBatch(batch)
    held = await lease(store, "root", "model-owner", ttl=10**12)
    live_claims: list[QueuedWorkClaim] = []
    stats = {"claims": 0, "empty": 0, "exact_ok": 0, "exact_rejected": 0, "mixed_states": 0}

    async def check_claim(boundary: QueuedWorkClaimBoundary, max_batches: int, ttl: int) -> None:
        expected = model.select(clock.now, boundary, max_batches)
        got = await store.claim_ready_queued_work("root", held.fence(), "owner", boundary, ttl, max_batches)
        if not expected:
            assert got is None, (clock.now, boundary, max_batches)
            stats["empty"] += 1
            return
        assert got is not None, (clock.now, boundary, max_batches, [m.batch.batch_id for m in expected])
        assert ids(got.batches) == [m.batch.batch_id for m in expected]
        assert got.batches == [m.batch for m in expected]
        head = expected[0]
        assert got.fencing_token == head.fencing + 1
        assert got.claim_id == f"qwc:{head.batch.enqueue_seq}:{head.fencing + 1}"
        assert (got.claimed_at_epoch_ms, got.expires_at_epoch_ms) == (clock.now, clock.now + ttl)
        model.take(expected, got)
        live_claims.append(got)
        stats["claims"] += 1

    for step in range(400):
        clock.now += rng.choice([0, 0, 10, 50, 200, 1_000])
        now = clock.now
        states = {
            "delayed": sum(1 for m in model.batches.values() if m.batch.available_at_ms > now),
            "held": sum(1 for m in model.batches.values() if m.claim_id and m.expires > now),
            "ready": sum(1 for m in model.batches.values() if m.ready(now)),
        }
        if len(model.batches) >= 1_000 and all(states.values()):
            stats["mixed_states"] += 1
        roll = rng.random()
        if roll < 0.55:
            await check_claim(
                IDLE if rng.random() < 0.7 else ACTIVE,
                rng.choice([1, 2, 3, 5, 8, 40, 2**63 - 1]),
                rng.choice([0, 30, 300, 3_000, 30_000]),
            )
        elif roll < 0.65 and live_claims:
            c = live_claims.pop(rng.randrange(len(live_claims)))
            await store.abandon_queued_work_claim(c)
            for m in model.carriers(c):
                m.claim_id, m.token, m.expires = None, None, 0
        elif roll < 0.72 and live_claims:
            c = rng.choice(live_claims)
            ttl = rng.choice([0, 100, 5_000])
            carriers = model.carriers(c)
            if len(carriers) == len(c.batches):
                renewed = await store.renew_queued_work_claim(c, ttl)
                assert renewed.expires_at_epoch_ms == now + ttl
                for m in carriers:
                    m.expires = now + ttl
            else:
                with pytest.raises(QueuedWorkClaimExpired):
                    await store.renew_queued_work_claim(c, ttl)
        elif roll < 0.77 and live_claims:
            c = live_claims.pop(rng.randrange(len(live_claims)))
            carriers = model.carriers(c)
            commit = minimal("root").with_session_execution_lease(held.fence()).completing_queue_claim(
                c.completion()
            )
            if sorted(m.batch.batch_id for m in carriers) == sorted(ids(c.batches)):
                await store.commit_runtime_state(commit)
                for m in carriers:
                    del model.batches[m.batch.batch_id]
            else:
                with pytest.raises(QueuedWorkClaimExpired):
                    await store.commit_runtime_state(commit)
        elif roll < 0.85:
            expected = model.select(now, IDLE, 4)
            if expected and rng.random() < 0.5:
                want = [m.batch.batch_id for m in expected]
                got = await store.claim_ready_queued_work_by_batch_ids(
                    "root", held.fence(), "owner", IDLE, 1_000, want
                )
                assert got is not None and ids(got.batches) == want
                assert got.fencing_token == expected[0].fencing + 1
                model.take(expected, got)
                live_claims.append(got)
                stats["exact_ok"] += 1
            else:
                later = [m for m in model.ordered() if m.ready(now)][1:6]
                if later:
                    want = [m.batch.batch_id for m in rng.sample(later, k=min(len(later), 2))]
                    selected = model.select(now, IDLE, len(want))
                    got = await store.claim_ready_queued_work_by_batch_ids(
                        "root", held.fence(), "owner", IDLE, 1_000, want
                    )
                    if [m.batch.batch_id for m in selected] == want:
                        assert got is not None
                        model.take(selected, got)
                        live_claims.append(got)
                    else:
                        assert got is None
                        for m in selected:  # rejected: counters advance, nothing stays claimed
                            m.fencing += 1
                            m.claim_id, m.token, m.expires = None, None, 0
                        stats["exact_rejected"] += 1
        elif roll < 0.95:
            victim = rng.choice(list(model.batches.values()))
            cancelled = await store.cancel_queued_work_batch("root", victim.batch.batch_id)
            if victim.claim_id is None or victim.expires <= now:
                assert cancelled == victim.batch
                del model.batches[victim.batch.batch_id]
            else:
                assert cancelled is None
        elif roll < 0.97:
            assert ids(await store.list_pending_queued_work("root")) == model.pending(now), step
        if step % 100 == 0:
            assert ids(await store.list_queued_work("root")) == [m.batch.batch_id for m in model.ordered()]
    assert ids(await store.list_pending_queued_work("root")) == model.pending(clock.now)
    assert stats["claims"] > 100 and stats["empty"] > 0, stats
    assert stats["exact_ok"] > 0 and stats["exact_rejected"] > 0, stats
    assert stats["mixed_states"] > 50, stats
    assert len(model.batches) >= 1_000, stats
    print("QUEUE MODEL STATS", stats)


async def test_claim_skips_a_long_run_of_held_and_delayed_batches(
    make_store: Callable[..., AsyncRedisStore],
) -> None:
    """More than one selection page (64) of skipped rows ahead of the ready ones."""
    clock = Clock(1000)
    store = make_store(clock=clock)
    held = await lease(store, "root", "owner", ttl=10**9)
    g = MergeKey.group("g")
    first = [
        await store.enqueue_queued_work(draft("root", f"h{n}", EARLIEST, JOIN, merge=g)) for n in range(150)
    ]
    got = await claim(store, "root", held, "owner", IDLE, 2**63 - 1)
    assert got is not None and ids(got.batches) == ids(first)
    delayed = [
        await store.enqueue_queued_work(draft("root", f"d{n}", EARLIEST, JOIN, merge=g, available=50_000))
        for n in range(100)
    ]
    tail = [
        await store.enqueue_queued_work(draft("root", f"r{n}", EARLIEST, JOIN, merge=g)) for n in range(70)
    ]
    got = await claim(store, "root", held, "owner", IDLE, 65)
    assert got is not None and ids(got.batches) == ids(tail[:65])
    clock.now = 50_000  # the delayed ones are ready now and come first; `got` is still held
    nxt = await claim(store, "root", held, "owner", IDLE, 1_000)
    assert nxt is not None and ids(nxt.batches) == ids(delayed) + ids(tail[65:])


async def test_claim_judges_readiness_by_this_operations_clock(
    make_store: Callable[..., AsyncRedisStore],
) -> None:
    """Regression: the ready index is kept by earlier operations' clocks. After the clock goes back, a row
    promoted at a later time is not ready at this `now` (not yet available, or its claim is live again) and
    must not be claimed."""
    clock = Clock(1000)
    store = make_store(clock=clock)
    a = await store.enqueue_queued_work(draft("root", "A", AFTER, EXCL))
    f = await store.enqueue_queued_work(draft("root", "F", EARLIEST, EXCL, available=3000))
    held = await lease(store, "root", "owner", ttl=10**9)
    first = await claim(store, "root", held, "w1", IDLE, 1, ttl=100)
    assert first is not None and ids(first.batches) == [a.batch_id]
    clock.now = 5000  # a gated claim promotes A (lapsed) and F (due) into the ready index
    assert await claim(store, "root", held, "w2", ACTIVE, 5) is None
    clock.now = 1050  # the clock goes back: A's claim is live again and F is not yet available
    assert ids(await store.list_pending_queued_work("root")) == [f.batch_id]
    assert await claim(store, "root", held, "w2", IDLE, 5) is None
    assert await claim(store, "root", held, "w2", ACTIVE, 5) is None
    renewed = await store.renew_queued_work_claim(first, 100)
    assert renewed.expires_at_epoch_ms == 1150
    clock.now = 3000
    got = await claim(store, "root", held, "w2", IDLE, 5)
    assert got is not None and ids(got.batches) == [a.batch_id] and got.fencing_token == 2
    got = await claim(store, "root", held, "w2", IDLE, 5)
    assert got is not None and ids(got.batches) == [f.batch_id]
