"""The worker runtime (sessionfence.worker): exactly-once draining by many workers, lease loss mid-turn,
SIGTERM and cancellation shutdown, connection drops mid-commit, and the metrics hook.

Multi-process tests use the session Redis (``redis_url``) and a unique key prefix; worker processes run
tests/worker_proc.py. Time is injected (``clock=``) wherever a lease must lapse, so nothing sleeps for a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio
from builders import draft
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from worker_proc import batches_of_node, turn_result

from sessionfence.keys import NamespaceKeys
from sessionfence.models import (
    DeliveryPolicy,
    FullGraph,
    QueuedWorkBatchDraft,
    RuntimeCommitResult,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
)
from sessionfence.scripts import script
from sessionfence.store import AsyncRedisStoreFactory
from sessionfence.worker import (
    SessionWorker,
    TurnContext,
    TurnOutcome,
    TurnResult,
    prometheus_metrics,
    submit,
)

WORKER_PROC = Path(__file__).with_name("worker_proc.py")


class RecordingMetrics:
    """A WorkerMetrics that remembers every call."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.observed: dict[str, list[float]] = {}

    def inc(self, name: str, value: int = 1, **labels: str) -> None:
        self.counts[(name, tuple(sorted(labels.items())))] += value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        self.observed.setdefault(name, []).append(seconds)

    def count(self, name: str, **labels: str) -> int:
        return sum(
            v for (n, ls), v in self.counts.items() if n == name and all(x in ls for x in labels.items())
        )


@pytest_asyncio.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    c = redis.asyncio.Redis.from_url(redis_url)
    yield c
    await c.aclose()


async def new_session(factory: AsyncRedisStoreFactory, sid: str) -> None:
    await factory.create_store(SessionStoreCreateRequest(sid, SessionRelation.root(), "test-model", "prov"))


def job(sid: str, text: str, slot: SlotPolicy = SlotPolicy.EXCLUSIVE) -> QueuedWorkBatchDraft:
    return draft(sid, text, DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, slot)


async def committed_batches(factory: AsyncRedisStoreFactory, sid: str) -> list[str]:
    read = await factory.store(sid).load_session(FullGraph())
    return [] if read is None else [b for n in read.graph.nodes for b in batches_of_node(n)]


async def head_revision(factory: AsyncRedisStoreFactory, sid: str) -> int:
    head = await factory.store(sid).load_session_head_meta()
    return 0 if head is None else head.head_revision


async def eventually(
    predicate: Callable[[], Awaitable[bool]],
    what: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"worker process exited ({proc.returncode}) before {what}: {err}")
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER_PROC), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def quick(ctx: TurnContext) -> TurnResult:
    return turn_result(ctx)


# ------------------------------------------------------------------------------------------------------------
# (a) many workers, tasks and processes: every batch committed exactly once


async def test_tasks_and_processes_drain_every_batch_exactly_once(
    client: redis.asyncio.Redis, redis_url: str, key_prefix: str
) -> None:
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
    sessions = [f"drain-{i}" for i in range(5)]
    enqueued: dict[str, list[str]] = {}
    for sid in sessions:
        await new_session(factory, sid)
        enqueued[sid] = [
            (
                await submit(
                    factory, job(sid, f"{sid}/{n}", SlotPolicy.JOIN if n % 3 else SlotPolicy.EXCLUSIVE)
                )
            ).batch_id
            for n in range(12)
        ]
    procs = [spawn("drain", redis_url, key_prefix, f"proc-{i}") for i in range(2)]
    try:

        async def any_commit() -> bool:
            return any([await head_revision(factory, sid) for sid in sessions])

        # Let the processes start working first (they pay the interpreter start-up), then join in with tasks.
        await eventually(any_commit, "a first commit by a worker process", proc=procs[0])

        async def handler(ctx: TurnContext) -> TurnResult:
            await asyncio.sleep(0.005)
            return turn_result(ctx)

        workers = [
            SessionWorker(factory, f"task-{i}", handler, max_batches=2, poll_interval_s=0.01)
            for i in range(3)
        ]
        await asyncio.wait_for(asyncio.gather(*(w.run(until_idle=True) for w in workers)), 60)
        codes = [await asyncio.to_thread(p.wait, 60) for p in procs]
        assert codes == [0, 0], [p.stderr.read() if p.stderr else b"" for p in procs]
    finally:
        reap(procs)

    owners: Counter[str] = Counter()
    for sid in sessions:
        store = factory.store(sid)
        committed = await committed_batches(factory, sid)
        assert Counter(committed) == Counter(enqueued[sid]), sid  # every batch once, none twice, none lost
        assert await store.list_queued_work(sid) == []
        read = await store.load_session(FullGraph())
        assert read is not None and read.head_revision == len(read.graph.nodes)  # one node per applied commit
        assert read.token_ledger == [
            TokenLedgerEntry("turn", "test-model", TokenUsage(12, len(read.graph.nodes), 0, 0))
        ]
        for n in read.graph.nodes:
            owners[(n.model_extra or {})["event"]["Protocol"]["payload"]["owner"].split("-")[0]] += 1
    # Processes always commit first (see `eventually` above); whether the tasks still find work is timing.
    assert owners["proc"] > 0 and set(owners) <= {"proc", "task"}, owners


# ------------------------------------------------------------------------------------------------------------
# (b) lease loss mid-handler


async def test_lease_lost_mid_handler_cancels_it_and_another_worker_redoes_the_batch_once(
    client: redis.asyncio.Redis, key_prefix: str, namespace: str
) -> None:
    now = [1_000]
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix, clock=lambda: now[0])
    sid = namespace
    await new_session(factory, sid)
    batch = await submit(factory, job(sid, "work"))
    started = asyncio.Event()
    cancelled: list[str] = []

    async def blocking(ctx: TurnContext) -> TurnResult:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.claim.claim_id)
            raise
        raise AssertionError("unreachable")

    metrics = RecordingMetrics()
    a = SessionWorker(factory, "worker-a", blocking, lease_ttl_ms=300, claim_ttl_ms=300, metrics=metrics)
    turn = asyncio.create_task(a.run_session(sid))
    await asyncio.wait_for(started.wait(), 10)

    async def renewed() -> bool:
        return metrics.count("renewed") >= 1

    await eventually(renewed, "a successful renewal")  # the clock stands still: renewals keep the lease
    now[0] = 2_000  # lease and claim lapse; another owner takes the lane
    store = factory.store(sid)
    intruder = await store.try_claim_session_execution_lease(sid, "intruder", 60_000)
    assert intruder is not None and intruder.fencing_token == 2
    assert await asyncio.wait_for(turn, 10) is TurnOutcome.LOST
    assert len(cancelled) == 1
    assert (
        metrics.count("renew_refused", kind="SessionExecutionLeaseExpired") == 1
        and metrics.count("turn_lost") == 1
    )
    assert (
        await head_revision(factory, sid) == 0 and await client.xlen(store.keys.events) == 0
    )  # nothing landed
    assert [b.batch_id for b in await store.list_pending_queued_work(sid)] == [batch.batch_id]

    await store.release_session_execution_lease(intruder.completion())
    commits: list[RuntimeCommitResult] = []
    b = SessionWorker(factory, "worker-b", quick, on_commit=lambda _ctx, r: commits.append(r))
    assert await b.run_session(sid) is TurnOutcome.COMMITTED
    assert await b.run_session(sid) is TurnOutcome.IDLE
    assert [c.head_revision for c in commits] == [1]
    assert (
        await committed_batches(factory, sid) == [batch.batch_id] and await store.list_queued_work(sid) == []
    )


async def test_result_finished_after_lease_loss_is_refused_and_redone_once(
    client: redis.asyncio.Redis, key_prefix: str, namespace: str
) -> None:
    now = [1_000]
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix, clock=lambda: now[0])
    sid = namespace
    await new_session(factory, sid)
    batch = await submit(factory, job(sid, "work"))
    started, proceed = asyncio.Event(), asyncio.Event()

    async def slow(ctx: TurnContext) -> TurnResult:
        started.set()
        await proceed.wait()
        return turn_result(ctx)

    metrics = RecordingMetrics()
    # TTL 30 s: the keep-alive sleeps 10 s (real time), so it never notices; the commit's fence must.
    a = SessionWorker(factory, "worker-a", slow, metrics=metrics)
    turn = asyncio.create_task(a.run_session(sid))
    await asyncio.wait_for(started.wait(), 10)
    now[0] = 40_000
    store = factory.store(sid)
    intruder = await store.try_claim_session_execution_lease(sid, "intruder", 60_000)
    assert intruder is not None
    proceed.set()
    assert await asyncio.wait_for(turn, 10) is TurnOutcome.REFUSED
    assert metrics.count("commit_refused", kind="SessionExecutionLeaseExpired") == 1
    assert metrics.count("commit_applied") == 0
    assert await head_revision(factory, sid) == 0 and await committed_batches(factory, sid) == []
    await store.release_session_execution_lease(intruder.completion())
    assert await SessionWorker(factory, "worker-b", quick).run_session(sid) is TurnOutcome.COMMITTED
    assert (
        await committed_batches(factory, sid) == [batch.batch_id] and await head_revision(factory, sid) == 1
    )


# ------------------------------------------------------------------------------------------------------------
# (c) shutdown: SIGTERM of a worker process mid-turn; cancellation of a worker task mid-turn


@pytest.mark.parametrize("mode", ["sigterm-sync", "sigterm-async"])
async def test_sigterm_mid_turn_finishes_the_turn_releases_the_lease_and_exits_0(
    mode: str, client: redis.asyncio.Redis, redis_url: str, key_prefix: str, namespace: str, tmp_path: Path
) -> None:
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
    sid = namespace
    await new_session(factory, sid)
    batch = await submit(factory, job(sid, "work"))
    started = tmp_path / "started"
    proc = spawn(mode, redis_url, key_prefix, "proc-worker", str(started))
    keys = NamespaceKeys(key_prefix, sid)
    try:

        async def mid_turn() -> bool:
            return started.exists()

        await eventually(mid_turn, "the handler to start", proc=proc)
        row = await client.hget(keys.leases, sid)
        assert row is not None and row.endswith(b" proc-worker")  # held by the process, mid-turn
        os.kill(proc.pid, signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    finally:
        reap([proc])
    assert code == 0, err
    store = factory.store(sid)
    assert await committed_batches(factory, sid) == [batch.batch_id]  # the turn was finished, once
    assert await head_revision(factory, sid) == 1 and await store.list_queued_work(sid) == []
    successor = await store.try_claim_session_execution_lease(sid, "successor", 1_000)
    assert successor is not None and successor.fencing_token == 2  # released: free at once, no TTL wait


async def test_cancelled_worker_task_gives_back_lease_and_claim(
    client: redis.asyncio.Redis, key_prefix: str, namespace: str
) -> None:
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
    sid = namespace
    await new_session(factory, sid)
    batch = await submit(factory, job(sid, "work"))
    started = asyncio.Event()

    async def blocking(ctx: TurnContext) -> TurnResult:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    worker = SessionWorker(
        factory, "worker-a", blocking
    )  # 30 s TTLs: only an explicit release frees the lane
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert task.cancelled()
    store = factory.store(sid)
    assert await head_revision(factory, sid) == 0
    assert [b.batch_id for b in await store.list_pending_queued_work(sid)] == [
        batch.batch_id
    ]  # claim abandoned
    successor = await store.try_claim_session_execution_lease(sid, "successor", 1_000)
    assert successor is not None  # lease released, not left to expire


# ------------------------------------------------------------------------------------------------------------
# (d) a connection drop between the commit's EVALSHA and its reply


class CommitReplyDroppingProxy:
    """A TCP proxy in front of Redis that forwards an EVALSHA carrying ``marker`` (the commit script's sha),
    waits for Redis's reply (so the commit has run) and then cuts the client's connection instead of
    delivering it, ``drops`` times. Every other byte is forwarded unchanged."""

    def __init__(self, host: str, port: int, marker: bytes, drops: int = 1) -> None:
        self.host, self.port, self.marker, self.drops = host, port, marker, drops
        self.dropped = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(self.host, self.port)
        self._writers += [cwriter, swriter]
        armed = asyncio.Event()

        async def upstream() -> None:
            tail = b""
            while data := await creader.read(65536):
                window = tail + data
                if self.dropped < self.drops and self.marker in window:
                    armed.set()  # before forwarding: whatever Redis answers next is the commit's reply
                tail = window[-len(self.marker) :]
                swriter.write(data)
                await swriter.drain()
            swriter.close()

        async def downstream() -> None:
            while data := await sreader.read(65536):
                if armed.is_set():
                    self.dropped += 1
                    cwriter.transport.abort()
                    swriter.transport.abort()
                    return
                cwriter.write(data)
                await cwriter.drain()
            cwriter.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


@pytest.mark.parametrize("retry_layer", ["worker", "client"])
async def test_connection_drop_mid_commit_then_retry_commits_exactly_once(
    retry_layer: str, client: redis.asyncio.Redis, key_prefix: str, namespace: str
) -> None:
    commit_script = script("commit")
    await client.script_load(commit_script.source)  # so the commit goes out as EVALSHA <sha>, never NOSCRIPT
    kwargs = client.connection_pool.connection_kwargs
    proxy = CommitReplyDroppingProxy(kwargs["host"], kwargs["port"], commit_script.sha.encode())
    url = await proxy.start()
    # "worker": redis-py's own retries off, so the worker sees BackendUnavailable and retries the commit.
    # "client": redis-py retries on connection errors and resends the EVALSHA itself. Either way: a replay.
    options: dict[str, Any] = (
        {"retry": Retry(NoBackoff(), 0)}
        if retry_layer == "worker"
        else {"retry": Retry(NoBackoff(), 3), "retry_on_error": [redis.exceptions.ConnectionError]}
    )
    proxied = redis.asyncio.Redis.from_url(url, **options)
    try:
        factory = AsyncRedisStoreFactory(proxied, key_prefix=key_prefix)
        direct = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
        sid = namespace
        await new_session(direct, sid)
        batch = await submit(direct, job(sid, "work"))
        metrics = RecordingMetrics()
        commits: list[RuntimeCommitResult] = []
        worker = SessionWorker(
            factory, "worker-a", quick, metrics=metrics, on_commit=lambda _c, r: commits.append(r)
        )
        assert await worker.run_session(sid) is TurnOutcome.COMMITTED
    finally:
        await proxied.aclose()
        await proxy.close()
    assert proxy.dropped == 1
    assert metrics.count("commit_retry") == (1 if retry_layer == "worker" else 0)
    store = direct.store(sid)
    assert [c.head_revision for c in commits] == [1]
    assert await head_revision(direct, sid) == 1  # advanced by exactly one
    read = await store.load_session(FullGraph())
    assert read is not None
    assert read.token_ledger == [
        TokenLedgerEntry("turn", "test-model", TokenUsage(1, 1, 0, 0))
    ]  # counted once
    assert await client.hlen(store.keys.turns) == 1 and await client.xlen(store.keys.events) == 1
    assert (
        await committed_batches(direct, sid) == [batch.batch_id] and await store.list_queued_work(sid) == []
    )
    successor = await store.try_claim_session_execution_lease(sid, "successor", 1_000)
    assert successor is not None  # the replay carried the release


# ------------------------------------------------------------------------------------------------------------
# (e) metrics


async def test_metrics_hook_counts_claims_commits_busy_failures_and_latencies(
    client: redis.asyncio.Redis, key_prefix: str
) -> None:
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
    for sid in ("ok", "busy", "fails", "idle"):
        await new_session(factory, sid)
    for text in ("one", "two"):
        await submit(factory, job("ok", text))
    await submit(factory, job("busy", "x"))
    await submit(factory, job("fails", "x"))
    holder = await factory.store("busy").try_claim_session_execution_lease("busy", "someone-else", 60_000)
    assert holder is not None

    async def handler(ctx: TurnContext) -> TurnResult:
        if ctx.session_id == "fails":
            raise RuntimeError("handler bug")
        return turn_result(ctx)

    metrics = RecordingMetrics()
    worker = SessionWorker(factory, "worker-m", handler, metrics=metrics)
    outcomes = [await worker.run_session(s) for s in ("ok", "ok", "ok", "busy", "fails", "idle")]
    assert outcomes == [
        TurnOutcome.COMMITTED,
        TurnOutcome.COMMITTED,
        TurnOutcome.IDLE,
        TurnOutcome.BUSY,
        TurnOutcome.FAILED,
        TurnOutcome.IDLE,
    ]
    assert metrics.count("lease_claimed") == 5 and metrics.count("lease_busy") == 1
    assert metrics.count("work_claimed") == 3 and metrics.count("commit_applied") == 2
    assert metrics.count("handler_failed") == 1 and metrics.count("commit_retry") == 0
    assert len(metrics.observed["turn"]) == 2 and len(metrics.observed["commit"]) == 2
    assert all(0 <= s < 30 for s in metrics.observed["turn"] + metrics.observed["commit"])
    # The failed turn gave its claim and lease back.
    assert len(await factory.store("fails").list_pending_queued_work("fails")) == 1
    assert await factory.store("fails").try_claim_session_execution_lease("fails", "next", 1_000) is not None


async def test_prometheus_metrics(client: redis.asyncio.Redis, key_prefix: str) -> None:
    prom = pytest.importorskip(
        "prometheus_client", reason="prometheus-client (the `metrics` extra) not installed"
    )
    registry = prom.CollectorRegistry()
    metrics = prometheus_metrics(registry, prefix="sftest")
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
    await new_session(factory, "p")
    await submit(factory, job("p", "one"))
    holder = await factory.store("q").try_claim_session_execution_lease("q", "other", 60_000)
    assert holder is not None
    await submit(factory, job("q", "x"))
    worker = SessionWorker(factory, "worker-p", quick, metrics=metrics)
    assert await worker.run_session("p") is TurnOutcome.COMMITTED
    assert await worker.run_session("q") is TurnOutcome.BUSY
    assert registry.get_sample_value("sftest_commit_applied_total") == 1.0
    assert registry.get_sample_value("sftest_lease_claimed_total") == 1.0
    assert registry.get_sample_value("sftest_lease_busy_total") == 1.0
    assert registry.get_sample_value("sftest_work_claimed_total") == 1.0
    assert registry.get_sample_value("sftest_turn_seconds_count") == 1.0
    assert registry.get_sample_value("sftest_commit_seconds_count") == 1.0
    assert b"sftest_commit_applied_total 1.0" in prom.generate_latest(registry)
