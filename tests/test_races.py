"""Real concurrency: OS processes and threads racing leases and commits on one namespace.

The multi-process tests use 'spawn' workers, each with its own blocking `RedisStore` and connection, on the
session's standalone Redis (``redis_url``) and the server clock. Thread tests run on both backends.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from builders import draft, leased, minimal
from redisbed import Backend

from sessionfence import (
    AttachmentIntent,
    DeliveryPolicy,
    HeadRevisionConflict,
    RedisStore,
    SessionExecutionLeaseExpired,
    SessionExecutionLeaseFence,
    SessionMeta,
    SlotPolicy,
    StoreError,
)

SID = "race"
ATTEMPTS = 300
WORKERS = 8
LEASE_TTL_MS = 2_000


# ---- process workers (module level so 'spawn' children can import them) ----------------------------------


def _race_worker(
    url: str, prefix: str, namespace: str, index: int, attempts: int, start: Any, out: Any
) -> None:
    """Claim, read the head, commit with CAS, release; sometimes commit blind or with a stale fence."""
    rng = random.Random(index)
    events: list[tuple[Any, ...]] = []
    old_leases: list[Any] = []
    owner = f"w{index}"
    try:
        with RedisStore.from_url(url, namespace, key_prefix=prefix) as store:
            start.wait(timeout=60)
            for _ in range(attempts):
                roll = rng.random()
                if roll < 0.15 and old_leases:
                    stale = rng.choice(old_leases)
                    try:
                        result = store.commit_runtime_state(
                            minimal(SID).with_session_execution_lease(stale.fence())
                        )
                        events.append(("stale-accepted", stale.fencing_token, result.head_revision))
                    except StoreError as exc:
                        events.append(("stale-refused", type(exc).__name__))
                    continue
                if roll < 0.25:
                    try:
                        result = store.commit_runtime_state(minimal(SID))
                        events.append(("nolease-accepted", result.head_revision))
                    except StoreError as exc:
                        events.append(("nolease-refused", type(exc).__name__))
                    continue
                granted = store.try_claim_session_execution_lease(SID, owner, LEASE_TTL_MS)
                if granted is None:
                    events.append(("busy",))
                    time.sleep(rng.random() / 1000)
                    continue
                events.append(("granted", granted.fencing_token))
                head = store.load_session_head_meta()
                revision = 0 if head is None else head.head_revision
                try:
                    result = store.commit_runtime_state(
                        leased(minimal(SID, expected_head_revision=revision), granted)
                    )
                    events.append(("accepted", revision, granted.fencing_token, result.head_revision))
                except StoreError as exc:
                    events.append(("refused", type(exc).__name__))
                    store.release_session_execution_lease(granted.completion())
                old_leases.append(granted)
    except BaseException as exc:  # report, never hang the parent
        events.append(("crash", repr(exc)))
    out.put((index, events))


def _barrier_worker(
    url: str, prefix: str, namespace: str, index: int, fence: SessionExecutionLeaseFence, start: Any, out: Any
) -> None:
    """C22 then S1 across processes: a first claim on a fresh lane, then a CAS commit with a shared fence."""
    events: list[tuple[Any, ...]] = []
    try:
        with RedisStore.from_url(url, namespace, key_prefix=prefix) as store:
            start.wait(timeout=60)
            granted = store.try_claim_session_execution_lease("first-claim-race", f"owner-{index}", 60_000)
            events.append(("claim", None if granted is None else granted.fencing_token))
            start.wait(timeout=60)
            try:
                commit = minimal("root", expected_head_revision=0).with_session_execution_lease(fence)
                events.append(("commit", store.commit_runtime_state(commit).head_revision))
            except StoreError as exc:
                events.append(
                    (
                        "commit-refused",
                        type(exc).__name__,
                        getattr(exc, "expected", None),
                        getattr(exc, "actual", None),
                    )
                )
    except BaseException as exc:
        events.append(("crash", repr(exc)))
    out.put((index, events))


def _run_processes(
    target: Callable[..., None],
    count: int,
    args: Callable[[int, Any, Any], tuple[Any, ...]],
    timeout: float = 120,
) -> dict[int, list[tuple[Any, ...]]]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(count)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=args(i, start, out), daemon=True) for i in range(count)]
    for p in procs:
        p.start()
    results: dict[int, list[tuple[Any, ...]]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) < count:
            try:
                index, events = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue_module.Empty:
                pytest.fail(f"only {len(results)} of {count} workers reported within {timeout}s")
            results[index] = events
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    for index, events in results.items():
        crashes = [e for e in events if e[0] == "crash"]
        assert not crashes, f"worker {index} crashed: {crashes}"
    return results


# ---- multi-process tests -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_processes_race_claims_and_commits_on_one_session(
    redis_url: str, key_prefix: str, namespace: str
) -> None:
    results = _run_processes(
        _race_worker,
        WORKERS,
        lambda i, start, out: (redis_url, key_prefix, namespace, i, ATTEMPTS, start, out),
    )
    events = [e for per_worker in results.values() for e in per_worker]
    kinds = Counter(e[0] for e in events)
    accepted = sorted((e for e in events if e[0] == "accepted"), key=lambda e: e[3])
    # Fenced refusals are possible only if a holder stalled past its 2 s lease; they must be lease refusals.
    assert {e[1] for e in events if e[0] == "refused"} <= {"SessionExecutionLeaseExpired"}, kinds
    # Nothing without a live lease was ever applied.
    assert kinds["stale-accepted"] == 0 and kinds["nolease-accepted"] == 0, kinds
    assert {e[1] for e in events if e[0] in ("stale-refused", "nolease-refused")} == {
        "SessionExecutionLeaseExpired"
    }
    assert kinds["stale-refused"] > 0 and kinds["nolease-refused"] > 0
    # Progress was made, and every accepted commit is accounted for exactly once.
    assert len(accepted) >= 20, kinds
    expected_revisions = [e[1] for e in accepted]
    assert len(set(expected_revisions)) == len(expected_revisions), "two commits won the same revision"
    assert [e[3] for e in accepted] == list(range(1, len(accepted) + 1))
    assert all(e[3] == e[1] + 1 for e in accepted)
    fencing = [e[2] for e in accepted]
    # Each lease commits at most once and is then released, so tokens strictly rise with the revision:
    # no accepted commit used a fence whose lease had already been superseded.
    assert fencing == sorted(fencing) and len(set(fencing)) == len(fencing)
    granted = [e[1] for e in events if e[0] == "granted"]
    assert len(set(granted)) == len(granted), "a fencing token was issued twice"
    assert max(granted) == len(granted)
    with RedisStore.from_url(redis_url, namespace, key_prefix=key_prefix) as store:
        head = store.load_session_head_meta()
        assert head is not None and head.head_revision == len(accepted)
        after = store.try_claim_session_execution_lease(SID, "after", 1_000)
        assert after is not None and after.fencing_token == len(granted) + 1


@pytest.mark.slow
def test_C22_and_S1_across_processes(redis_url: str, key_prefix: str, namespace: str) -> None:
    with RedisStore.from_url(redis_url, namespace, key_prefix=key_prefix) as store:
        held = store.try_claim_session_execution_lease("root", "session-owner", 60_000)
        assert held is not None
    fence = held.fence()
    results = _run_processes(
        _barrier_worker,
        WORKERS,
        lambda i, start, out: (redis_url, key_prefix, namespace, i, fence, start, out),
    )
    claims = [e[1] for events in results.values() for e in events if e[0] == "claim"]
    assert len(claims) == WORKERS
    assert [c for c in claims if c is not None] == [1]
    commits = [e for events in results.values() for e in events if e[0].startswith("commit")]
    assert sorted(e[1] for e in commits if e[0] == "commit") == [1]
    refused = [e for e in commits if e[0] == "commit-refused"]
    assert len(refused) == WORKERS - 1
    assert all(e[1:] == ("HeadRevisionConflict", 0, 1) for e in refused), refused
    with RedisStore.from_url(redis_url, namespace, key_prefix=key_prefix) as store:
        head = store.load_session_head_meta()
        assert head is not None and head.head_revision == 1


# ---- thread tests (both backends) --------------------------------------------------------------------------


def _in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; return results or exceptions, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.fixture
def sync_stores(backend: Backend, namespace: str, key_prefix: str) -> Callable[[int], list[RedisStore]]:
    """``n`` blocking handles on the test's namespace, each with its own client."""
    return lambda n: [RedisStore(backend.sync_client(), namespace, key_prefix=key_prefix) for _ in range(n)]


def test_C22_first_claims_from_16_threads(sync_stores: Callable[[int], list[RedisStore]]) -> None:
    stores = sync_stores(16)
    for round_ in range(3):
        lane = f"first-claim-race-{round_}"
        results = _in_threads(
            16, lambda i, lane=lane: stores[i].try_claim_session_execution_lease(lane, f"o{i}", 60_000)
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0].fencing_token == 1
        stores[0].release_session_execution_lease(winners[0].completion())


def test_S1_cas_from_16_threads(sync_stores: Callable[[int], list[RedisStore]]) -> None:
    stores = sync_stores(16)
    held = stores[0].try_claim_session_execution_lease("root", "session-owner", 60_000)
    assert held is not None
    commit = minimal("root", expected_head_revision=0).with_session_execution_lease(held.fence())
    results = _in_threads(16, lambda i: stores[i].commit_runtime_state(commit))
    applied = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert [r.head_revision for r in applied] == [1]
    assert len(refused) == 15
    assert all(isinstance(r, HeadRevisionConflict) and (r.expected, r.actual) == (0, 1) for r in refused)
    head = stores[1].load_session_head_meta()
    assert head is not None and head.head_revision == 1


def test_S34_16_concurrent_first_writes_from_threads(
    sync_stores: Callable[[int], list[RedisStore]], backend: Backend
) -> None:
    stores = sync_stores(16)

    def first_write(i: int) -> Any:
        store = stores[i]
        match i % 5:
            case 0:
                return store.try_claim_session_execution_lease(f"s{i}", f"w{i}", 60_000)
            case 1:
                return store.save_session_meta(SessionMeta("root", f"n{i}", "t", "m"))
            case 2:
                return store.record_intent(AttachmentIntent(f"att{i}", "root", "uri", 100))
            case 3:
                return store.enqueue_queued_work(
                    draft(f"s{i}", "q", DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.EXCLUSIVE)
                )
            case _:
                granted = store.try_claim_session_execution_lease(f"c{i}", f"w{i}", 60_000)
                assert granted is not None
                return granted

    results = _in_threads(16, first_write)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert all(results[i] is not None and results[i].fencing_token == 1 for i in range(0, 16, 5))
    assert backend.sync_client().get(stores[0].keys.schema) == b"1"
    assert len(stores[0].list_uncommitted(1_000)) == len(range(2, 16, 5))
    # The namespace is fully usable afterwards.
    granted = stores[0].try_claim_session_execution_lease("root", "w", 60_000)
    assert granted is not None
    assert stores[1].commit_runtime_state(leased(minimal("root"), granted)).head_revision == 1


def test_threads_commit_under_their_own_leases(sync_stores: Callable[[int], list[RedisStore]]) -> None:
    """8 threads each loop claim/read/commit/release; the head ends at the number of applied commits."""
    stores = sync_stores(8)
    rounds = 25

    def worker(i: int) -> list[tuple[int, int]]:
        store, done = stores[i], []
        while len(done) < rounds:
            granted = store.try_claim_session_execution_lease("root", f"t{i}-{uuid.uuid4().hex[:4]}", 5_000)
            if granted is None:
                time.sleep(0.0005)
                continue
            head = store.load_session_head_meta()
            revision = 0 if head is None else head.head_revision
            result = store.commit_runtime_state(
                leased(minimal("root", expected_head_revision=revision), granted)
            )
            done.append((granted.fencing_token, result.head_revision))
        return done

    results = _in_threads(8, worker)
    assert not [r for r in results if isinstance(r, BaseException)], results
    pairs = sorted((p for r in results for p in r), key=lambda p: p[1])
    assert [p[1] for p in pairs] == list(range(1, 8 * rounds + 1))
    tokens = [p[0] for p in pairs]
    assert tokens == sorted(tokens)
    with pytest.raises(SessionExecutionLeaseExpired):
        stores[0].commit_runtime_state(minimal("root"))
