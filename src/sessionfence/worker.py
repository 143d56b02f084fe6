"""A worker runtime over the store: drop it into a job runner and every turn is leased, fenced and exactly-once.

Loop: find sessions that may have ready work (a hint index producers signal through `submit`), claim the
session's execution lease, claim ready queued work, run the user's handler, and commit the handler's result
together with the queue acks, a turn stamp and the lease fence in ONE `commit_runtime_state`. While the handler
runs, the lease and the claim are renewed at about a third of their TTL; if either renewal is refused the handler
is cancelled and its result is never committed. A commit whose outcome is unknown (connection dropped) is
retried as is: the turn stamp (turn id + content hash) makes the retry a replay, never a second apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from .codec import settle_ready_call, signal_ready_call
from .errors import (
    BackendUnavailable,
    HeadRevisionConflict,
    QueuedWorkClaimExpired,
    SessionExecutionLeaseExpired,
    StoreError,
)
from .keys import ready_index_key, ready_version_key
from .models import (
    ActivePath,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    PersistedSessionConfig,
    PersistedSessionRead,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    RuntimeCommit,
    RuntimeCommitResult,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    TokenLedgerEntry,
)
from .scripts import run_async
from .store import AsyncRedisStore, AsyncRedisStoreFactory

__all__ = [
    "NullMetrics",
    "SessionWorker",
    "TurnContext",
    "TurnOutcome",
    "TurnResult",
    "WorkerMetrics",
    "prometheus_metrics",
    "run_worker_sync",
    "submit",
]

log = logging.getLogger("sessionfence.worker")


@dataclass(frozen=True)
class TurnContext:
    """What a handler gets: the session as committed so far and the queued work claimed for this turn."""

    session_id: str
    owner_id: str
    lease: SessionExecutionLease
    claim: QueuedWorkClaim
    session: PersistedSessionRead | None

    @property
    def head_revision(self) -> int:
        return self.session.head_revision if self.session else 0

    @property
    def leaf_node_id(self) -> str | None:
        return self.session.graph.leaf_node_id if self.session else None

    @property
    def payloads(self) -> list[Any]:
        return [item.payload for batch in self.claim.batches for item in batch.items]


@dataclass
class TurnResult:
    """What a handler returns; fields left None keep the session's current value."""

    graph: GraphUnchanged | GraphAppend | GraphReplaceFull
    checkpoint: HydratedSessionCheckpoint = field(default_factory=HydratedSessionCheckpoint)
    usage_deltas: list[TokenLedgerEntry] = field(default_factory=list)
    config: PersistedSessionConfig | None = None
    agent_frames: list[Any] | None = None
    current_agent_frame_id: str | None = None
    committed_attachment_ids: list[str] = field(default_factory=list)


Handler = Callable[[TurnContext], Coroutine[Any, Any, TurnResult]]


class TurnOutcome(StrEnum):
    COMMITTED = "committed"
    BUSY = "busy"  # another worker holds the session's lease
    IDLE = "idle"  # no ready work
    LOST = "lost"  # a renewal was refused: the handler was cancelled, nothing committed
    REFUSED = "refused"  # the commit was refused (stale fence, claim or revision): nothing committed
    FAILED = "failed"  # the handler raised: claim abandoned, nothing committed


class WorkerMetrics(Protocol):
    """Counts and latencies of claims, commits, conflicts and expiries; plug in Prometheus or OpenTelemetry."""

    def inc(self, name: str, value: int = 1, **labels: str) -> None: ...

    def observe(self, name: str, seconds: float, **labels: str) -> None: ...


class NullMetrics:
    def inc(self, name: str, value: int = 1, **labels: str) -> None:
        return None

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        return None


def prometheus_metrics(registry: Any = None, prefix: str = "sessionfence") -> WorkerMetrics:
    """A WorkerMetrics backed by prometheus-client (the `metrics` extra); imported only when asked for."""
    import prometheus_client as prom  # type: ignore[import-not-found, unused-ignore]

    counters: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    reg = registry if registry is not None else prom.REGISTRY

    class _Prom:
        def inc(self, name: str, value: int = 1, **labels: str) -> None:
            if name not in counters:
                counters[name] = prom.Counter(f"{prefix}_{name}", name, sorted(labels), registry=reg)
            metric = counters[name]
            (metric.labels(**labels) if labels else metric).inc(value)

        def observe(self, name: str, seconds: float, **labels: str) -> None:
            if name not in histograms:
                histograms[name] = prom.Histogram(f"{prefix}_{name}_seconds", name, sorted(labels), registry=reg)
            metric = histograms[name]
            (metric.labels(**labels) if labels else metric).observe(seconds)

    return _Prom()


async def submit(factory: AsyncRedisStoreFactory, draft: QueuedWorkBatchDraft) -> QueuedWorkBatch:
    """Enqueue a batch and signal workers that its session has work (at its availability time)."""
    batch = await factory.store(draft.session_id).enqueue_queued_work(draft)
    call = signal_ready_call(factory.key_prefix, draft.session_id, batch.available_at_ms)
    await run_async(factory.client, call.script, call.keys, call.args)
    return batch


def _now_ms() -> int:
    return int(time.time() * 1000)


class SessionWorker:
    """Runs turns for any session with ready work; many workers (processes, hosts) may run at once."""

    def __init__(
        self,
        factory: AsyncRedisStoreFactory,
        owner_id: str,
        handler: Handler,
        *,
        lease_ttl_ms: int = 30_000,
        claim_ttl_ms: int = 30_000,
        max_batches: int = 8,
        boundary: QueuedWorkClaimBoundary = QueuedWorkClaimBoundary.IDLE,
        poll_interval_s: float = 0.05,
        idle_recheck_ms: int = 500,
        commit_attempts: int = 8,
        metrics: WorkerMetrics | None = None,
        logger: logging.Logger | None = None,
        on_commit: Callable[[TurnContext, RuntimeCommitResult], None] | None = None,
    ) -> None:
        self.factory = factory
        self.owner_id = owner_id
        self.handler = handler
        self.lease_ttl_ms = lease_ttl_ms
        self.claim_ttl_ms = claim_ttl_ms
        self.max_batches = max_batches
        self.boundary = boundary
        self.poll_interval_s = poll_interval_s
        self.idle_recheck_ms = idle_recheck_ms
        self.commit_attempts = commit_attempts
        self.metrics: WorkerMetrics = metrics or NullMetrics()
        self.log = logger or log
        self.on_commit = on_commit
        self._stop = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish (or abandon) the current turn, release the lease, and leave `run`."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    async def run(self, *, until_idle: bool = False) -> None:
        """Work until `request_stop` (or, with until_idle, until no session has due work)."""
        while not self._stop.is_set():
            did_work = False
            for session_id, version in await self._due_sessions():
                if self._stop.is_set():
                    break
                try:
                    outcome = await self.run_session(session_id, version)
                except StoreError as exc:  # one bad session (corrupt record, outage) must not stop the worker
                    self.log.error("turn on %s failed: %s", session_id, exc)
                    continue
                did_work = did_work or outcome is TurnOutcome.COMMITTED
            if until_idle and not did_work and not await self._due_sessions():
                return
            if not did_work:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.poll_interval_s)

    async def _due_sessions(self, limit: int = 64) -> list[tuple[str, int]]:
        client: Any = self.factory.client
        prefix = self.factory.key_prefix
        try:
            ids = await client.zrangebyscore(ready_index_key(prefix), "-inf", _now_ms(), start=0, num=limit)
            if not ids:
                return []
            versions = await client.hmget(ready_version_key(prefix), ids)
        except BackendUnavailable:
            return []
        except Exception as exc:  # redis errors while polling: back off, keep the loop alive
            self.log.warning("polling the ready index failed: %s", exc)
            return []
        out = [(i.decode(), int(v or 0)) for i, v in zip(ids, versions, strict=True)]
        random.shuffle(out)  # spread workers over sessions
        return out

    # -- one turn ------------------------------------------------------------------------------------------
    async def run_session(self, session_id: str, version: int = 0) -> TurnOutcome:
        store = self.factory.store(session_id)
        t0 = time.perf_counter()
        try:
            lease = await store.try_claim_session_execution_lease(session_id, self.owner_id, self.lease_ttl_ms)
        except BackendUnavailable as exc:
            self.log.warning("lease claim on %s failed: %s", session_id, exc)
            return TurnOutcome.BUSY
        if lease is None:
            self.metrics.inc("lease_busy")
            return TurnOutcome.BUSY
        self.metrics.inc("lease_claimed")
        try:
            claim = await store.claim_ready_queued_work(
                session_id, lease.fence(), self.owner_id, self.boundary, self.claim_ttl_ms, self.max_batches
            )
        except (SessionExecutionLeaseExpired, BackendUnavailable) as exc:
            self.log.info("claiming work of %s failed: %s", session_id, exc)
            await self._release(store, lease)
            return TurnOutcome.LOST
        if claim is None:
            await self._settle(store, session_id, version)
            await self._release(store, lease)
            return TurnOutcome.IDLE
        self.metrics.inc("work_claimed", len(claim.batches))
        return await self._run_turn(store, lease, claim, t0)

    async def _run_turn(
        self, store: AsyncRedisStore, lease: SessionExecutionLease, claim: QueuedWorkClaim, t0: float
    ) -> TurnOutcome:
        sid = lease.session_id
        try:
            read = await store.load_session(ActivePath())
        except StoreError as exc:
            self.log.warning("loading %s failed: %s", sid, exc)
            await self._give_up(store, lease, claim)
            return TurnOutcome.FAILED
        ctx = TurnContext(sid, self.owner_id, lease, claim, read)
        handler_task: asyncio.Task[TurnResult] = asyncio.create_task(self.handler(ctx))
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_alive(store, lease, claim, handler_task, lost))
        try:
            result = await handler_task
        except asyncio.CancelledError:
            if not lost.is_set():
                # The worker itself is cancelled (host shutdown): hand the claim and the lease back now rather
                # than leaving the session blocked until the TTL lapses, then let the cancellation through.
                with contextlib.suppress(Exception):
                    await self._give_up(store, lease, claim)
                raise
            self.metrics.inc("turn_lost")
            self.log.warning("lease or claim of %s lost mid-turn: handler cancelled, result dropped", sid)
            await self._give_up(store, lease, claim)
            return TurnOutcome.LOST
        except Exception:
            self.metrics.inc("handler_failed")
            self.log.exception("handler failed on %s", sid)
            await self._give_up(store, lease, claim)
            return TurnOutcome.FAILED
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if lost.is_set():
            await self._give_up(store, lease, claim)
            return TurnOutcome.LOST
        commit = self._build_commit(ctx, result)
        try:
            committed = await self._commit(store, commit)
        except (SessionExecutionLeaseExpired, QueuedWorkClaimExpired, HeadRevisionConflict) as exc:
            self.metrics.inc("commit_refused", kind=type(exc).__name__)
            self.log.warning("commit of %s refused: %s", sid, exc)
            await self._give_up(store, lease, claim)
            return TurnOutcome.REFUSED
        except StoreError as exc:
            # Outcome unknown after every retry (Redis down) or a backend fault: if the commit landed, its
            # claim and lease are already gone and giving them up is a no-op; if not, the work is redone.
            self.metrics.inc("commit_failed", kind=type(exc).__name__)
            self.log.error("commit of %s failed: %s", sid, exc)
            await self._give_up(store, lease, claim)
            return TurnOutcome.FAILED
        self.metrics.inc("commit_applied")
        self.metrics.observe("turn", time.perf_counter() - t0)
        if self.on_commit is not None:
            self.on_commit(ctx, committed)
        return TurnOutcome.COMMITTED

    def _build_commit(self, ctx: TurnContext, result: TurnResult) -> RuntimeCommit:
        s = ctx.session
        commit = RuntimeCommit(
            session_id=ctx.session_id,
            expected_head_revision=ctx.head_revision,
            config=result.config or (s.config if s else PersistedSessionConfig("", {})),
            agent_frames=result.agent_frames if result.agent_frames is not None else (s.agent_frames if s else []),
            current_agent_frame_id=(
                result.current_agent_frame_id
                if result.current_agent_frame_id is not None
                else (s.current_agent_frame_id if s else "")
            ),
            graph=result.graph,
            checkpoint=result.checkpoint,
            usage_deltas=result.usage_deltas,
        ).completing_queue_claim(ctx.claim.completion()).with_committed_attachments(result.committed_attachment_ids)
        # The turn id names this claim; the hash names the content: a retry replays, a different result conflicts.
        stamp = RuntimeTurnCommitStamp(ctx.session_id, f"turn:{ctx.claim.claim_id}", commit.turn_commit_hash())
        return (
            commit.with_turn_commit(stamp)
            .with_session_execution_lease(ctx.lease.fence())
            .releasing_session_execution_lease(ctx.lease.completion())
        )

    async def _commit(self, store: AsyncRedisStore, commit: RuntimeCommit) -> RuntimeCommitResult:
        delay = 0.05
        for attempt in range(1, self.commit_attempts + 1):
            t = time.perf_counter()
            try:
                result = await store.commit_runtime_state(commit)
                self.metrics.observe("commit", time.perf_counter() - t)
                return result
            except BackendUnavailable as exc:
                if attempt == self.commit_attempts:
                    raise
                self.metrics.inc("commit_retry")
                self.log.info("commit outcome unknown (%s); retrying as a replay", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    async def _keep_alive(
        self,
        store: AsyncRedisStore,
        lease: SessionExecutionLease,
        claim: QueuedWorkClaim,
        handler_task: asyncio.Task[TurnResult],
        lost: asyncio.Event,
    ) -> None:
        """Renew at ~1/3 TTL; a refused renewal (or no successful renewal within a TTL) cancels the handler."""
        interval = min(self.lease_ttl_ms, self.claim_ttl_ms) / 3000
        deadline = time.monotonic() + min(self.lease_ttl_ms, self.claim_ttl_ms) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await store.renew_session_execution_lease(lease.fence(), self.lease_ttl_ms)
                claim = await store.renew_queued_work_claim(claim, self.claim_ttl_ms)
                deadline = time.monotonic() + min(self.lease_ttl_ms, self.claim_ttl_ms) / 1000
                self.metrics.inc("renewed")
            except (SessionExecutionLeaseExpired, QueuedWorkClaimExpired) as exc:
                self.metrics.inc("renew_refused", kind=type(exc).__name__)
                lost.set()
                handler_task.cancel()
                return
            except BackendUnavailable:
                if time.monotonic() >= deadline:
                    lost.set()
                    handler_task.cancel()
                    return
            # redis.asyncio can swallow a cancellation that lands mid-command (the call returns or raises a
            # connection error instead): honour it here, or the turn would wait on this loop forever.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError

    async def _give_up(self, store: AsyncRedisStore, lease: SessionExecutionLease, claim: QueuedWorkClaim) -> None:
        with contextlib.suppress(StoreError):
            await store.abandon_queued_work_claim(claim)
        await self._release(store, lease)

    async def _release(self, store: AsyncRedisStore, lease: SessionExecutionLease) -> None:
        with contextlib.suppress(StoreError):
            await store.release_session_execution_lease(lease.completion())

    async def _settle(self, store: AsyncRedisStore, session_id: str, version: int) -> None:
        """No ready work: look again later if batches remain (delayed or held), else drop the hint."""
        with contextlib.suppress(StoreError):
            remaining = await store.list_queued_work(session_id)
            due = _now_ms() + self.idle_recheck_ms if remaining else None
            call = settle_ready_call(self.factory.key_prefix, session_id, version, due)
            await run_async(self.factory.client, call.script, call.keys, call.args)


def run_worker_sync(
    url: str,
    owner_id: str,
    handler: Callable[[TurnContext], TurnResult],
    *,
    key_prefix: str = "sf",
    **options: Any,
) -> None:
    """Entry point for thread-based runners: runs a SessionWorker in this thread, the handler in a worker thread.

    Stops on SIGTERM/SIGINT when called from the main thread.
    """

    async def main() -> None:
        factory = AsyncRedisStoreFactory.from_url(url, key_prefix=key_prefix)

        async def async_handler(ctx: TurnContext) -> TurnResult:
            return await asyncio.to_thread(handler, ctx)

        worker = SessionWorker(factory, owner_id, async_handler, **options)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            worker.install_signal_handlers()
        try:
            await worker.run()
        finally:
            await factory.aclose()

    asyncio.run(main())
