"""Queued work with bad input: refused arguments, range boundaries and forged claims.

Refused arguments raise ``InvalidRequest`` (also a ``ValueError``) before any I/O; forged claims get the
contract's typed answer (completion and renew: ``QueuedWorkClaimExpired``; abandon: a silent no-op). Either
way nothing is written, which every test checks with DUMP snapshots of the test's whole key prefix.
Runs on both backends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from builders import Clock, draft, minimal
from redisbed import Backend, dump_keys

from sessionfence import (
    AsyncRedisStore,
    DeliveryPolicy,
    InvalidRequest,
    MergeKey,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    QueuedWorkClaimExpired,
    QueuedWorkCompletion,
    SessionExecutionLease,
    SessionExecutionLeaseExpired,
    SlotPolicy,
)

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
JOIN = SlotPolicy.JOIN
EXCL = SlotPolicy.EXCLUSIVE
IDLE = QueuedWorkClaimBoundary.IDLE
MAX_U63 = 2**63 - 1
MAX_MS = 2**53 - 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(backend: Backend, namespace: str, key_prefix: str, clock: Clock) -> AsyncRedisStore:
    return AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix, clock=clock)


@pytest.fixture
def snapshot(backend: Backend, key_prefix: str) -> Callable[[], dict[bytes, bytes]]:
    client = backend.sync_client()
    return lambda: dump_keys(client, f"{key_prefix}:*")


def ids(items: Any) -> list[str]:
    return [x.batch_id for x in items]


async def lease(store: AsyncRedisStore, sid: str = "root", owner: str = "owner") -> SessionExecutionLease:
    granted = await store.try_claim_session_execution_lease(sid, owner, 10**9)
    assert granted is not None
    return granted


async def assert_refused(
    calls: dict[str, Callable[[], Awaitable[Any]]], snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    before = snapshot()
    for name, call in calls.items():
        try:
            await call()
        except InvalidRequest as exc:
            assert isinstance(exc, ValueError), name
        else:
            pytest.fail(f"{name}: not refused with InvalidRequest")
        assert snapshot() == before, name


# ---- enqueue -----------------------------------------------------------------------------------------------


async def test_enqueue_refuses_unknown_policies_and_out_of_range_values(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]], backend: Backend, key_prefix: str
) -> None:
    good = draft("root", "good", EARLIEST, EXCL)

    def bad(**update: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.enqueue_queued_work(good.model_copy(update=update))

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "delivery unknown": bad(delivery_policy="sometimes"),
        "delivery wire string": bad(delivery_policy="earliest_safe_boundary"),
        "delivery None": bad(delivery_policy=None),
        "slot unknown": bad(slot_policy="maybe"),
        "slot enum of the wrong type": bad(slot_policy=EARLIEST),
        "merge kind unknown": bad(merge_key=MergeKey.model_construct(kind="weird", label=None)),
        "merge never with label": bad(merge_key=MergeKey.model_construct(kind="never", label="x")),
        "merge group label not str": bad(merge_key=MergeKey.model_construct(kind="group", label=5)),
        "merge key a string": bad(merge_key="never"),
        "available -1": bad(available_at_ms=-1),
        "available 2**63": bad(available_at_ms=2**63),
        "available bool": bad(available_at_ms=True),
        "available float": bad(available_at_ms=1.5),
        "session empty": bad(session_id=""),
        "session not str": bad(session_id=7),
        "source key not str": bad(source_key=7),
        "payloads not a list": bad(payloads={"type": "x"}),
        "payload not JSON": bad(payloads=[{"type": "x", "v": object()}]),
        "payload NaN": bad(payloads=[{"type": "x", "v": float("nan")}]),
        "payload non-str key": bad(payloads=[{1: "x"}]),
        "draft of the wrong type": lambda: store.enqueue_queued_work(good.to_wire()),  # type: ignore[arg-type]
    }
    await assert_refused(calls, snapshot)
    assert list(backend.sync_client().scan_iter(match=f"{key_prefix}:*")) == []


async def test_enqueue_accepts_range_boundaries(store: AsyncRedisStore) -> None:
    far = await store.enqueue_queued_work(draft("root", "far", EARLIEST, EXCL, available=MAX_U63))
    now = await store.enqueue_queued_work(draft("root", "now", EARLIEST, EXCL, available=0))
    assert far.available_at_ms == MAX_U63
    assert (await store.list_queued_work("root")) == [far, now]
    assert ids(await store.list_pending_queued_work("root")) == [far.batch_id, now.batch_id]
    held = await lease(store)
    got = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 100, MAX_U63)
    assert got is not None and ids(got.batches) == [now.batch_id]  # `far` is never ready
    # Opaque payload values round-trip exactly, big integers included.
    payload = {
        "type": "x", "big": 2**64 - 1, "neg": -(2**63), "f": 1e-7, "s": "\u00e9\u0000", "l": [], "o": {},
    }
    odd = await store.enqueue_queued_work(
        draft("root", "odd", EARLIEST, EXCL).model_copy(update={"payloads": [payload]})
    )
    listed = await store.list_queued_work("root")
    assert listed[-1] == odd and listed[-1].items[0].payload == payload


# ---- claim -------------------------------------------------------------------------------------------------


async def test_claim_refuses_bad_arguments(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await store.enqueue_queued_work(draft("root", "x", EARLIEST, EXCL))
    held = await lease(store)
    fence = held.fence()

    def c(**changes: Any) -> Callable[[], Awaitable[Any]]:
        args: dict[str, Any] = {
            "session_id": "root", "session_execution_lease": fence, "owner_id": "w", "boundary": IDLE,
            "lease_ttl_ms": 100, "max_batches": 1,
        }
        args.update(changes)
        return lambda: store.claim_ready_queued_work(**args)

    def exact(batch_ids: Any, **changes: Any) -> Callable[[], Awaitable[Any]]:
        args: dict[str, Any] = {
            "session_id": "root", "session_execution_lease": fence, "owner_id": "w", "boundary": IDLE,
            "lease_ttl_ms": 100, "batch_ids": batch_ids,
        }
        args.update(changes)
        return lambda: store.claim_ready_queued_work_by_batch_ids(**args)

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "boundary unknown": c(boundary="sometimes"),
        "boundary wire string": c(boundary="idle"),
        "boundary None": c(boundary=None),
        "boundary of the wrong enum": c(boundary=EARLIEST),
        "ttl -1": c(lease_ttl_ms=-1),
        "ttl 2**63": c(lease_ttl_ms=2**63),
        "ttl float": c(lease_ttl_ms=1.0),
        "max -1": c(max_batches=-1),
        "max 2**63": c(max_batches=2**63),
        "max bool": c(max_batches=True),
        "max None": c(max_batches=None),
        "max 0 with a bad boundary": c(max_batches=0, boundary="sometimes"),
        "max 0 with ttl -1": c(max_batches=0, lease_ttl_ms=-1),
        "owner empty": c(owner_id=""),
        "session empty": c(session_id=""),
        "fence is a lease": c(session_execution_lease=held),
        "fence fencing -1": c(session_execution_lease=fence.model_copy(update={"fencing_token": -1})),
        "fence fencing 2**63": c(session_execution_lease=fence.model_copy(update={"fencing_token": 2**63})),
        "exact id not str": exact([5]),
        "exact ids a str": exact("qwb:abc"),
        "exact ids None": exact(None),
        "exact ttl -1": exact(["qwb:x"], lease_ttl_ms=-1),
        "exact empty list with ttl -1": exact([], lease_ttl_ms=-1),
        "exact bad boundary": exact(["qwb:x"], boundary="idle"),
    }
    await assert_refused(calls, snapshot)


async def test_claim_accepts_range_boundaries(store: AsyncRedisStore, clock: Clock) -> None:
    g = MergeKey.group("g")
    batches = [
        await store.enqueue_queued_work(draft("root", f"j{n}", EARLIEST, JOIN, merge=g)) for n in range(3)
    ]
    held = await lease(store)
    got = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, MAX_U63, MAX_U63)
    assert got is not None and ids(got.batches) == ids(batches)
    assert got.expires_at_epoch_ms == MAX_MS  # now + ttl saturates
    renewed = await store.renew_queued_work_claim(got, MAX_U63)
    assert renewed.expires_at_epoch_ms == MAX_MS
    clock.now = MAX_MS - 1
    assert await store.list_pending_queued_work("root") == []
    shorter = await store.renew_queued_work_claim(got, 0)  # ttl 0: claimable at once
    assert shorter.expires_at_epoch_ms == MAX_MS - 1
    assert ids(await store.list_pending_queued_work("root")) == ids(batches)


async def test_empty_exact_claim_returns_none_without_any_write(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await store.enqueue_queued_work(draft("root", "x", EARLIEST, EXCL))
    held = await lease(store)
    forged = held.fence().model_copy(update={"lease_token": "forged", "fencing_token": 99})
    before = snapshot()
    for fence in (held.fence(), forged):
        for batch_ids in ([], ()):
            assert await store.claim_ready_queued_work_by_batch_ids(
                "root", fence, "w", IDLE, 100, batch_ids
            ) is None
        assert await store.claim_ready_queued_work("root", fence, "w", IDLE, 100, 0) is None
    assert await store.claim_ready_queued_work_by_batch_ids("nobody", forged, "w", IDLE, 100, []) is None
    assert snapshot() == before


async def test_claim_with_a_forged_session_fence_is_refused_without_writes(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]], clock: Clock
) -> None:
    batch = await store.enqueue_queued_work(draft("root", "x", EARLIEST, EXCL, available=500))
    held = await lease(store)
    other = await lease(store, "other")
    clock.now = 2000  # `batch` is due: a claim would move it between indexes
    fence = held.fence()
    forged = {
        "token": fence.model_copy(update={"lease_token": fence.lease_token + ":stale"}),
        "fencing": fence.model_copy(update={"fencing_token": fence.fencing_token + 1}),
        "owner": fence.model_copy(update={"owner_id": "intruder"}),
        "other session's fence": other.fence(),
        "empty": fence.model_copy(update={"session_id": "", "owner_id": "", "lease_token": ""}),
    }
    before = snapshot()
    for name, bad in forged.items():
        with pytest.raises(SessionExecutionLeaseExpired) as info:
            await store.claim_ready_queued_work("root", bad, "w", IDLE, 100, 1)
        assert info.value.session_id == "root", name
        with pytest.raises(SessionExecutionLeaseExpired):
            await store.claim_ready_queued_work_by_batch_ids("root", bad, "w", IDLE, 100, [batch.batch_id])
        assert snapshot() == before, name
    got = await store.claim_ready_queued_work("root", fence, "w", IDLE, 100, 1)
    assert got is not None and got.fencing_token == 1


# ---- forged claims: renew, abandon, completion -------------------------------------------------------------


async def test_forged_claims_are_refused_or_ignored_without_writes(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    g = MergeKey.group("g")
    b1 = await store.enqueue_queued_work(draft("root", "b1", EARLIEST, JOIN, merge=g))
    b2 = await store.enqueue_queued_work(draft("root", "b2", EARLIEST, JOIN, merge=g))
    await store.enqueue_queued_work(draft("other", "o", EARLIEST, EXCL))
    held = await lease(store)
    # A stale claim of the same batches: claimed with ttl 0, then re-claimed.
    stale = await store.claim_ready_queued_work("root", held.fence(), "w0", IDLE, 0, 10)
    real = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 60_000, 10)
    assert stale is not None and real is not None
    assert ids(real.batches) == [b1.batch_id, b2.batch_id] and real.fencing_token == 2
    seq = b1.enqueue_seq
    forged: dict[str, QueuedWorkClaim] = {
        "wrong token": real.model_copy(update={"lease_token": real.lease_token + ":stale"}),
        "token of another claim": real.model_copy(update={"lease_token": stale.lease_token}),
        "empty token": real.model_copy(update={"lease_token": ""}),
        "wrong fence in claim id": real.model_copy(update={"claim_id": f"qwc:{seq}:3"}),
        "stale claim (older fence)": stale,
        "stale claim id with the live token": real.model_copy(update={"claim_id": stale.claim_id}),
        "other session": real.model_copy(update={"session_id": "other"}),
        "unknown session": real.model_copy(update={"session_id": "nobody"}),
        "unknown claim id": real.model_copy(update={"claim_id": "qwc:999:1"}),
        # Right id and token but the wrong batch count: renew and completion refuse, while abandon (which
        # matches on id and token alone, §2.9) would legitimately release the claim, so it is skipped.
        "fewer batches": real.model_copy(update={"batches": real.batches[:1]}),
        "more batches": real.model_copy(update={"batches": [*real.batches, real.batches[0]]}),
    }
    right_identity = {"fewer batches", "more batches"}
    base = minimal("root").with_session_execution_lease(held.fence())
    before = snapshot()
    for name, claim in forged.items():
        with pytest.raises(QueuedWorkClaimExpired) as info:
            await store.renew_queued_work_claim(claim, 1_000)
        assert (info.value.session_id, info.value.claim_id) == (claim.session_id, claim.claim_id), name
        assert snapshot() == before, f"renew wrote: {name}"
        if name not in right_identity:
            assert await store.abandon_queued_work_claim(claim) is None
            assert snapshot() == before, f"abandon wrote: {name}"
        with pytest.raises(QueuedWorkClaimExpired) as info:
            await store.commit_runtime_state(base.completing_queue_claim(claim.completion()))
        assert (info.value.session_id, info.value.claim_id) == (claim.session_id, claim.claim_id), name
        assert snapshot() == before, f"completion wrote: {name}"
    # The real claim was never disturbed: it renews, then completes.
    assert await store.list_pending_queued_work("root") == []
    renewed = await store.renew_queued_work_claim(real, 5_000)
    assert renewed.expires_at_epoch_ms == 6_000
    result = await store.commit_runtime_state(base.completing_queue_claim(real.completion()))
    assert result.head_revision == 1
    assert await store.list_queued_work("root") == []
    assert len(await store.list_queued_work("other")) == 1


async def test_abandon_with_a_foreign_session_keeps_the_claim(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    """Regression: abandon naming another session matched nothing but dropped the claim's batch list."""
    b = await store.enqueue_queued_work(draft("root", "b", EARLIEST, EXCL))
    held = await lease(store)
    real = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 60_000, 1)
    assert real is not None
    before = snapshot()
    await store.abandon_queued_work_claim(real.model_copy(update={"session_id": "other"}))
    assert snapshot() == before
    assert (await store.renew_queued_work_claim(real, 1_000)).claim_id == real.claim_id
    await store.abandon_queued_work_claim(real)
    assert ids(await store.list_pending_queued_work("root")) == [b.batch_id]


async def test_forged_completions_in_commits(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    b = await store.enqueue_queued_work(draft("root", "b", EARLIEST, EXCL))
    held = await lease(store)
    real = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 60_000, 1)
    assert real is not None
    good = real.completion()
    base = minimal("root").with_session_execution_lease(held.fence())
    forged: dict[str, QueuedWorkCompletion] = {
        "empty claim id": good.model_copy(update={"claim_id": ""}),
        "empty session": good.model_copy(update={"session_id": ""}),
        "no batch ids": good.model_copy(update={"batch_ids": []}),
        "empty batch id": good.model_copy(update={"batch_ids": [""]}),
        "batch of another claim": good.model_copy(update={"batch_ids": ["qwb:" + "f" * 64]}),
    }
    before = snapshot()
    for name, completion in forged.items():
        with pytest.raises(QueuedWorkClaimExpired):
            await store.commit_runtime_state(base.completing_queue_claim(completion))
        assert snapshot() == before, name
    # Argument errors in a completion are refused before any I/O.
    malformed = {
        "batch ids a str": good.model_copy(update={"batch_ids": b.batch_id}),
        "batch id not str": good.model_copy(update={"batch_ids": [5]}),
        "claim id not str": good.model_copy(update={"claim_id": None}),
    }
    await assert_refused(
        {
            name: (lambda c=c: store.commit_runtime_state(base.completing_queue_claim(c)))
            for name, c in malformed.items()
        },
        snapshot,
    )
    await store.commit_runtime_state(base.completing_queue_claim(good))
    assert await store.list_queued_work("root") == []


async def test_renew_and_abandon_refuse_bad_arguments(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await store.enqueue_queued_work(draft("root", "b", EARLIEST, EXCL))
    held = await lease(store)
    real = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 60_000, 1)
    assert real is not None
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "renew ttl -1": lambda: store.renew_queued_work_claim(real, -1),
        "renew ttl 2**63": lambda: store.renew_queued_work_claim(real, 2**63),
        "renew ttl None": lambda: store.renew_queued_work_claim(real, None),  # type: ignore[arg-type]
        "renew a completion": lambda: store.renew_queued_work_claim(real.completion(), 10),  # type: ignore[arg-type]
        "renew claim id not str": lambda: store.renew_queued_work_claim(
            real.model_copy(update={"claim_id": 5}), 10
        ),
        "renew batches not a list": lambda: store.renew_queued_work_claim(
            real.model_copy(update={"batches": None}), 10
        ),
        "abandon a completion": lambda: store.abandon_queued_work_claim(real.completion()),  # type: ignore[arg-type]
        "abandon token not str": lambda: store.abandon_queued_work_claim(
            real.model_copy(update={"lease_token": b"x"})
        ),
        "cancel session not str": lambda: store.cancel_queued_work_batch(None, "x"),  # type: ignore[arg-type]
        "cancel batch not str": lambda: store.cancel_queued_work_batch("root", 5),  # type: ignore[arg-type]
        "list session not str": lambda: store.list_queued_work(5),  # type: ignore[arg-type]
        "list pending session not str": lambda: store.list_pending_queued_work(5),  # type: ignore[arg-type]
    }
    await assert_refused(calls, snapshot)
    assert (await store.renew_queued_work_claim(real, 10)).claim_id == real.claim_id


# ---- odd but valid values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sid", ["a b{c}%:d", "é🙂", "{", "%7B", "q_all:x", "x" * 1000])
async def test_odd_session_ids_and_keys_stay_apart(store: AsyncRedisStore, sid: str) -> None:
    """Session ids and source keys end up in key names and hash fields: odd ones must not collide."""
    mine = await store.enqueue_queued_work(draft(sid, "mine", EARLIEST, EXCL, source="k \n{x}"))
    plain = await store.enqueue_queued_work(draft("x", "plain", EARLIEST, EXCL, source="k \n{x}"))
    again = await store.enqueue_queued_work(draft(sid, "again", EARLIEST, EXCL, source="k \n{x}"))
    empty_key = await store.enqueue_queued_work(draft(sid, "empty key", EARLIEST, EXCL, source=""))
    assert again == mine and plain.batch_id != mine.batch_id
    assert await store.enqueue_queued_work(draft(sid, "dup", EARLIEST, EXCL, source="")) == empty_key
    assert ids(await store.list_queued_work(sid)) == [mine.batch_id, empty_key.batch_id]
    assert ids(await store.list_queued_work("x")) == [plain.batch_id]
    held = await lease(store, sid)
    got = await store.claim_ready_queued_work(sid, held.fence(), "w", IDLE, 100, 10)
    assert got is not None and ids(got.batches) == [mine.batch_id] and got.session_id == sid
    await store.commit_runtime_state(
        minimal(sid).with_session_execution_lease(held.fence()).completing_queue_claim(got.completion())
    )
    assert ids(await store.list_queued_work(sid)) == [empty_key.batch_id]
    assert ids(await store.list_queued_work("x")) == [plain.batch_id]


async def test_merge_keys_and_availability_boundaries(store: AsyncRedisStore, clock: Clock) -> None:
    held = await lease(store)
    never = await store.enqueue_queued_work(draft("root", "never", EARLIEST, JOIN))
    named = await store.enqueue_queued_work(
        draft("root", "g", EARLIEST, JOIN, merge=MergeKey.group("never"))
    )
    spaced = await store.enqueue_queued_work(
        draft("root", "s", EARLIEST, JOIN, merge=MergeKey.group("never "))
    )
    results = [
        await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 100, 10) for _ in range(3)
    ]
    assert [ids(c.batches) if c else None for c in results] == [
        [never.batch_id], [named.batch_id], [spaced.batch_id]
    ]
    due = await store.enqueue_queued_work(draft("t", "due now", EARLIEST, EXCL, available=clock.now))
    later = await store.enqueue_queued_work(draft("t", "1 ms later", EARLIEST, EXCL, available=clock.now + 1))
    t_lease = await lease(store, "t")
    got = await store.claim_ready_queued_work("t", t_lease.fence(), "w", IDLE, 100, 10)
    assert got is not None and ids(got.batches) == [due.batch_id]
    assert await store.claim_ready_queued_work("t", t_lease.fence(), "w", IDLE, 100, 10) is None
    clock.now += 1
    got = await store.claim_ready_queued_work("t", t_lease.fence(), "w", IDLE, 100, 10)
    assert got is not None and ids(got.batches) == [later.batch_id]


async def test_zero_ttl_session_lease_cannot_claim(
    store: AsyncRedisStore, snapshot: Callable[[], dict[bytes, bytes]]
) -> None:
    await store.enqueue_queued_work(draft("root", "x", EARLIEST, EXCL))
    born_expired = await store.try_claim_session_execution_lease("root", "w", 0)
    assert born_expired is not None
    before = snapshot()
    with pytest.raises(SessionExecutionLeaseExpired):
        await store.claim_ready_queued_work("root", born_expired.fence(), "w", IDLE, 100, 1)
    assert snapshot() == before


async def test_exact_claim_with_an_empty_id_matches_nothing(store: AsyncRedisStore) -> None:
    """Exact-claim ids are looked up, never written: an empty one matches nothing (§0) and the attempt is a
    rejected exact claim (§2.8): None, with the selected batch's counter advanced."""
    x = await store.enqueue_queued_work(draft("root", "x", EARLIEST, EXCL))
    held = await lease(store)
    exact = await store.claim_ready_queued_work_by_batch_ids("root", held.fence(), "w", IDLE, 100, [""])
    assert exact is None
    assert ids(await store.list_pending_queued_work("root")) == [x.batch_id]
    got = await store.claim_ready_queued_work("root", held.fence(), "w", IDLE, 100, 1)
    assert got is not None and ids(got.batches) == [x.batch_id] and got.fencing_token == 2
