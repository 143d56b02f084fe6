"""Durable queued work under real concurrency: producer and consumer OS processes on shared sessions.

4 producers enqueue 2,000 batches each across a few sessions (10% of enqueues repeat an earlier source key);
4 consumers loop: take a session lease, claim ready work (IDLE, random max_batches) with a claim TTL that ends
with the lease, and commit ``minimal(...)`` completing the claim under the lease fence. Consumers sometimes
abandon their claim, and sometimes advance the injected clock (a multiprocessing Value shared by every
process) past their own lease, after which their commit must be refused.

Afterwards: every distinct batch was acked exactly once, nothing is left queued, dedup behaved (a repeated
key returned the stored batch unless that batch had already been completed), and within each session the
acks, ordered by commit head revision, are increasing in enqueue_seq.

Each session lives in its own namespace (a namespace is bound to one session by its first commit), like a
factory lays them out. Workers are 'spawn' processes with blocking `RedisStore`s on the standalone Redis.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import random
import time
from collections import Counter
from typing import Any

import pytest
import redis
from builders import draft, leased, minimal, text

from sessionfence import (
    DeliveryPolicy,
    MergeKey,
    QueuedWorkClaimBoundary,
    RedisStore,
    SessionExecutionLeaseExpired,
    SlotPolicy,
    StoreError,
)

SESSIONS = ["alpha", "beta", "gamma"]
PRODUCERS = 4
CONSUMERS = 4
ITEMS_PER_PRODUCER = 2_000
REPEAT_RATE = 0.10
LEASE_TTL_MS = 1_000  # in injected-clock milliseconds; time only moves when a consumer advances it
START_MS = 1_000_000
WORKER_DEADLINE_S = 45.0


def _namespace(base: str, sid: str) -> str:
    return f"{base}-{sid}"


def _stores(url: str, prefix: str, base: str, clock: Any) -> tuple[redis.Redis, dict[str, RedisStore]]:
    client = redis.Redis.from_url(url)
    stores = {
        sid: RedisStore(client, _namespace(base, sid), key_prefix=prefix, clock=clock) for sid in SESSIONS
    }
    return client, stores


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 1)


# ---- process workers (module level so 'spawn' children can import them) ----------------------------------


def _producer(url: str, prefix: str, base: str, index: int, shared_clock: Any, start: Any, out: Any) -> None:
    rng = random.Random(1000 + index)
    events: list[tuple[Any, ...]] = []
    client = None
    try:
        client, stores = _stores(url, prefix, base, lambda: int(shared_clock.value))
        start.wait(timeout=60)
        latest: dict[str, tuple[str, str, int, str]] = {}  # key -> (sid, batch_id, seq, text)
        keys: list[str] = []
        for n in range(ITEMS_PER_PRODUCER):
            if keys and rng.random() < REPEAT_RATE:
                key = rng.choice(keys[-30:])
                sid, prev_id, prev_seq, prev_text = latest[key]
                new_text = f"repeat p{index} n{n}"
                t0 = time.monotonic()
                batch = stores[sid].enqueue_queued_work(
                    draft(sid, new_text, DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.JOIN,
                          merge=MergeKey.group("g"), source=key)
                )
                t1 = time.monotonic()
                if batch.batch_id == prev_id:
                    if (batch.enqueue_seq, text(batch)) != (prev_seq, prev_text):
                        events.append(("crash", f"dedup returned a changed batch for {key}"))
                    events.append(("dedup-hit", key, prev_id, t0, t1))
                else:
                    if batch.enqueue_seq <= prev_seq or text(batch) != new_text:
                        events.append(("crash", f"re-enqueue of {key} did not make a newer batch"))
                    events.append(("dedup-new", key, prev_id, batch.batch_id, sid, batch.enqueue_seq, t0, t1))
                    latest[key] = (sid, batch.batch_id, batch.enqueue_seq, new_text)
                continue
            sid = rng.choice(SESSIONS)
            key = f"p{index}:n{n}"
            body = f"p{index} n{n}"
            batch = stores[sid].enqueue_queued_work(
                draft(
                    sid, body,
                    DeliveryPolicy.EARLIEST_SAFE_BOUNDARY if rng.random() < 0.9
                    else DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT,
                    SlotPolicy.JOIN if rng.random() < 0.9 else SlotPolicy.EXCLUSIVE,
                    merge=MergeKey.group("g") if rng.random() < 0.95 else MergeKey.group("h"),
                    source=key,
                )
            )
            latest[key] = (sid, batch.batch_id, batch.enqueue_seq, body)
            keys.append(key)
            events.append(("new", key, batch.batch_id, sid, batch.enqueue_seq))
        events.append(("producer-done", time.monotonic()))
        events.append(("cpu-producer", _cpu()))
    except BaseException as exc:  # report, never hang the parent
        events.append(("crash", repr(exc)))
    finally:
        if client is not None:
            client.close()
    out.put(("producer", index, events))


def _consumer(
    url: str, prefix: str, base: str, index: int, shared_clock: Any, producers_done: Any, start: Any, out: Any
) -> None:
    rng = random.Random(2000 + index)
    events: list[tuple[Any, ...]] = []
    pinned = [0]
    owner = f"consumer-{index}"
    client = None

    def pin() -> int:
        """Read the shared clock once; the next store operation sees exactly this value."""
        pinned[0] = int(shared_clock.value)
        return pinned[0]

    def drained(stores: dict[str, RedisStore]) -> bool:
        # A cheap look at each session's queue index (every stored batch is in it, docs/keys.md).
        assert client is not None
        return bool(producers_done.value) and all(
            client.zcard(s.keys.q_all(sid)) == 0 for sid, s in stores.items()
        )

    try:
        client, stores = _stores(url, prefix, base, lambda: pinned[0])
        start.wait(timeout=60)
        deadline = time.monotonic() + WORKER_DEADLINE_S
        idle = 0
        events.append(("consumer-start", time.monotonic()))
        while True:
            if time.monotonic() > deadline:
                events.append(("crash", "consumer deadline passed with work left"))
                break
            if idle >= 3:  # nothing to do here right now: back off instead of spinning the CPU
                if drained(stores):
                    break
                time.sleep(0.005)
                idle = 0
            sid = rng.choice(SESSIONS)
            store = stores[sid]
            pin()
            lease = store.try_claim_session_execution_lease(sid, owner, LEASE_TTL_MS)
            if lease is None:
                idle += 1
                continue
            now = pin()
            ttl = lease.expires_at_epoch_ms - now  # the claim never outlives the lease
            if ttl <= 0:
                events.append(("lease-lapsed-before-claim",))
                continue
            max_batches = rng.choice([1, 2, 3, 5, 10, 50, 500])
            try:
                claim = store.claim_ready_queued_work(
                    sid, lease.fence(), owner, QueuedWorkClaimBoundary.IDLE, ttl, max_batches
                )
            except SessionExecutionLeaseExpired:
                events.append(("claim-refused",))
                continue
            if claim is None:
                pin()
                store.release_session_execution_lease(lease.completion())
                idle += 1
                continue
            idle = 0
            batches = [(b.batch_id, b.enqueue_seq) for b in claim.batches]
            if len(batches) > max_batches or any(b.session_id != sid for b in claim.batches):
                events.append(("crash", f"claim broke its limits: {claim}"))
            roll = rng.random()
            if roll < 0.05:
                store.abandon_queued_work_claim(claim)
                pin()
                store.release_session_execution_lease(lease.completion())
                events.append(("abandoned", len(batches)))
                continue
            forced = roll < 0.08
            if forced:  # this consumer stalls: its lease lapses mid-work
                with shared_clock.get_lock():
                    lapsed = max(shared_clock.value, lease.expires_at_epoch_ms) + rng.randrange(1, 50)
                    shared_clock.value = lapsed
            pin()
            commit = leased(minimal(sid).completing_queue_claim(claim.completion()), lease)
            t0 = time.monotonic()
            try:
                result = store.commit_runtime_state(commit)
            except SessionExecutionLeaseExpired:
                events.append(("forced-refused" if forced else "refused",))
                continue
            except StoreError as exc:
                events.append(("unexpected", type(exc).__name__, str(exc)))
                continue
            t1 = time.monotonic()
            if forced:
                events.append(("forced-accepted", sid, result.head_revision))
            events.append(("ack", sid, result.head_revision, batches, t0, t1))
        events.append(("cpu-consumer", _cpu()))
    except BaseException as exc:
        events.append(("crash", repr(exc)))
    finally:
        if client is not None:
            client.close()
    out.put(("consumer", index, events))


# ---- the test ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_producers_and_consumers_ack_every_batch_once_in_order(
    redis_url: str, key_prefix: str, namespace: str
) -> None:
    began = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    shared_clock = ctx.Value("q", START_MS)
    producers_done = ctx.Value("b", 0)
    start = ctx.Barrier(PRODUCERS + CONSUMERS)
    out = ctx.Queue()
    producers = [
        ctx.Process(target=_producer, args=(redis_url, key_prefix, namespace, i, shared_clock, start, out),
                    daemon=True)
        for i in range(PRODUCERS)
    ]
    consumers = [
        ctx.Process(
            target=_consumer,
            args=(redis_url, key_prefix, namespace, i, shared_clock, producers_done, start, out),
            daemon=True,
        )
        for i in range(CONSUMERS)
    ]
    procs = producers + consumers
    for p in procs:
        p.start()
    results: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    deadline = time.monotonic() + 58
    try:
        while len(results) < len(procs):
            try:
                kind, index, events = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue_module.Empty:
                pytest.fail(f"only {len(results)} of {len(procs)} workers reported: {sorted(results)}")
            results[(kind, index)] = events
            if sum(1 for k in results if k[0] == "producer") == PRODUCERS:
                producers_done.value = 1
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    elapsed = time.monotonic() - began
    marks = sorted(
        (e[0], round(e[1] - began, 1))
        for ev in results.values()
        for e in ev
        if e[0].endswith(("done", "start"))
    )
    print("QUEUE RACE MARKS", marks, [e for ev in results.values() for e in ev if e[0].startswith("cpu")])
    crashes = {k: [e for e in ev if e[0] == "crash"] for k, ev in results.items()}
    assert not any(crashes.values()), crashes

    produced = [e for k, ev in results.items() if k[0] == "producer" for e in ev]
    consumed = [e for k, ev in results.items() if k[0] == "consumer" for e in ev]
    kinds = Counter(e[0] for e in produced + consumed)
    print("QUEUE RACE STATS", dict(kinds), f"{elapsed:.1f}s", "clock", shared_clock.value - START_MS)

    # What was enqueued: every distinct batch, with its session and sequence.
    enqueued: dict[str, tuple[str, int]] = {}
    for e in produced:
        if e[0] == "new":
            _, _key, batch_id, sid, seq = e
            enqueued[batch_id] = (sid, seq)
        elif e[0] == "dedup-new":
            _, _key, _prev, batch_id, sid, seq, _t0, _t1 = e
            enqueued[batch_id] = (sid, seq)
    assert len(enqueued) >= PRODUCERS * ITEMS_PER_PRODUCER * (1 - REPEAT_RATE) * 0.95
    assert kinds["new"] + kinds["dedup-hit"] + kinds["dedup-new"] == PRODUCERS * ITEMS_PER_PRODUCER
    assert kinds["dedup-hit"] > 0

    # What was acked: each distinct batch exactly once, nothing unknown, nothing lost.
    acks = [e for e in consumed if e[0] == "ack"]
    acked = Counter(batch_id for e in acks for batch_id, _seq in e[3])
    twice = {b: n for b, n in acked.items() if n > 1}
    assert not twice, f"{len(twice)} batches acked more than once"
    assert set(acked) - set(enqueued) == set(), "acked a batch nobody enqueued"
    lost = set(enqueued) - set(acked)
    assert not lost, f"{len(lost)} batches never acked"
    for e in acks:
        for batch_id, seq in e[3]:
            assert enqueued[batch_id] == (e[1], seq)
    with redis.Redis.from_url(redis_url) as client:
        for sid in SESSIONS:
            store = RedisStore(client, _namespace(namespace, sid), key_prefix=key_prefix)
            assert store.list_queued_work(sid) == []
            head = store.load_session_head_meta()
            per_session = [e for e in acks if e[1] == sid]
            assert head is not None and head.head_revision == len(per_session)

    # Within a session, acks ordered by commit revision are increasing in enqueue_seq.
    for sid in SESSIONS:
        per_session = sorted((e for e in acks if e[1] == sid), key=lambda e: e[2])
        revisions = [e[2] for e in per_session]
        assert revisions == list(range(1, len(per_session) + 1)), f"{sid}: a revision was reused or skipped"
        seqs = [seq for e in per_session for _batch_id, seq in e[3]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{sid}: acked out of enqueue order"

    # Dedup: a repeated key returns the stored batch, unless that batch was completed first.
    ack_times = {batch_id: (e[4], e[5]) for e in acks for batch_id, _seq in e[3]}
    for e in produced:
        if e[0] == "dedup-hit":
            _, key, prev_id, t0, _t1 = e
            # The batch cannot have been deleted (its commit returned) before this enqueue even began.
            assert not ack_times[prev_id][1] < t0, f"dedup of {key} returned a completed batch"
        elif e[0] == "dedup-new":
            _, key, prev_id, _new, _sid, _seq, _t0, t1 = e
            # A new batch is only allowed once the previous one is gone: its commit began before this ended.
            assert prev_id in ack_times, f"dedup of {key} made a new batch but {prev_id} was never acked"
            assert ack_times[prev_id][0] < t1, f"dedup of {key} missed a stored batch"

    # The chaos happened: abandons, forced lapses (every one refused), and plenty of commits.
    assert kinds["abandoned"] > 0, kinds
    assert kinds["forced-refused"] > 0, kinds
    assert kinds["forced-accepted"] == 0, kinds
    assert kinds["unexpected"] == 0, [e for e in consumed if e[0] == "unexpected"][:5]
    assert kinds["ack"] > 100, kinds
    assert elapsed < 60, f"took {elapsed:.1f}s"
