"""One worker process of `sessionfence fleet`: a `SessionWorker` running the simulated turn.

Started with multiprocessing's 'spawn' method, so everything it needs travels in a picklable `WorkerSpec`.
Every connection it opens carries the Redis client name of its incarnation (the fault injector finds and kills
them with CLIENT KILL). Redis-py's transparent retries are turned off so a dropped connection reaches the
runtime's own recovery (unknown commit outcome -> replay). It writes JSONL events to its own file, one
unbuffered write per line, so a SIGKILL loses at most the event being written:

- ``start`` / ``exit`` / ``crash``;
- ``committed``: session, head revision, claim id, fencing token of the lease, batches and items acked;
- ``refused`` / ``lost`` / ``failed``: a turn that did not commit, with the error kind when known;
- ``log``: the runtime's own INFO+ log records (refusals, retries, connection errors);
- ``stats``: the metrics hook's counters, every second and at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any

import orjson
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..models import QueuedWorkClaim, QueuedWorkClaimBoundary, RuntimeCommitResult, SessionExecutionLease
from ..store import AsyncRedisStore, AsyncRedisStoreFactory
from ..worker import SessionWorker, TurnContext, TurnOutcome, TurnResult
from .fleet_sim import simulate_turn

__all__ = ["LOADING", "MODEL_CALL", "RUNNING", "STARTING", "EventLog", "WorkerSpec", "worker_main"]

# Values of the shared state byte. LOADING: the worker holds a lease and a claim and is reading the session,
# its keep-alive not started yet (paused here, its first write after waking is the commit). MODEL_CALL: the
# handler waits on its simulated model call (paused here, its first write is usually a lease renewal).
STARTING, RUNNING, LOADING, MODEL_CALL = 0, 1, 2, 3


@dataclass(frozen=True)
class WorkerSpec:
    url: str
    prefix: str
    slot: int
    incarnation: int
    log_path: str
    client_name: str
    lease_ttl_ms: int
    claim_ttl_ms: int
    max_batches: int
    max_turn_sleep_ms: int
    seed: int
    parent_pid: int

    @property
    def owner_id(self) -> str:
        return f"worker-{self.slot}-{self.incarnation}"


class EventLog:
    """Append-only JSONL; each event is one write(2) on an unbuffered file."""

    def __init__(self, path: str) -> None:
        self._file: IO[bytes] = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()

    def write(self, ev: str, **fields: Any) -> None:
        fields["ev"] = ev
        fields["t"] = round(time.time(), 4)
        self._file.write(orjson.dumps(fields) + b"\n")

    def close(self) -> None:
        self._file.close()


class FleetMetrics:
    """The runtime's metrics hook: counters keyed ``name`` or ``name:kind``; remembers the last error kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds: dict[str, list[float]] = {}  # name -> [count, total, max]
        self.last_kind = ""

    def inc(self, name: str, value: int = 1, **labels: str) -> None:
        kind = labels.get("kind")
        if kind:
            self.last_kind = kind
            name = f"{name}:{kind}"
        self.counts[name] += value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        agg = self.seconds.setdefault(name, [0.0, 0.0, 0.0])
        agg[0] += 1
        agg[1] += seconds
        agg[2] = max(agg[2], seconds)


class _EventHandler(logging.Handler):
    """Copies the runtime's log records into the event log; an exception among a record's arguments names the
    error kind of the turn in progress when the metrics hook did not (claim and load failures)."""

    def __init__(self, events: EventLog, metrics: FleetMetrics) -> None:
        super().__init__(logging.INFO)
        self.events = events
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException) and not self.metrics.last_kind:
                self.metrics.last_kind = type(arg).__name__
        with contextlib.suppress(Exception):
            self.events.write("log", level=record.levelname, msg=record.getMessage())


class FleetWorker(SessionWorker):
    """A SessionWorker that logs every turn that did not commit (with the claim it was working on) and marks
    in the shared state byte when it holds a lease and a claim (LOADING, then MODEL_CALL from the handler)."""

    events: EventLog
    fleet_metrics: FleetMetrics
    current_claim: str | None = None
    state: Any = None

    def _set_state(self, value: int) -> None:
        if self.state is not None:
            self.state.value = value

    async def _run_turn(
        self, store: AsyncRedisStore, lease: SessionExecutionLease, claim: QueuedWorkClaim, t0: float
    ) -> TurnOutcome:
        self._set_state(LOADING)
        try:
            return await super()._run_turn(store, lease, claim, t0)
        finally:
            self._set_state(RUNNING)

    async def run_session(self, session_id: str, version: int = 0) -> TurnOutcome:
        self.fleet_metrics.last_kind = ""
        self.current_claim = None
        outcome = await super().run_session(session_id, version)
        if outcome in (TurnOutcome.REFUSED, TurnOutcome.LOST, TurnOutcome.FAILED):
            self.events.write(
                outcome.value, sid=session_id, kind=self.fleet_metrics.last_kind, claim_id=self.current_claim
            )
        return outcome


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies, even while it is SIGSTOPped (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_main(spec: WorkerSpec, state: Any = None) -> None:
    """Process entry point (multiprocessing target).

    `state` is a shared byte the parent reads: STARTING until the worker loop runs, then RUNNING, LOADING or
    MODEL_CALL (see the constants); the fault injector aims kills and pauses at the last two.
    """
    _die_with_parent()
    if os.getppid() != spec.parent_pid:  # the parent died before prctl took effect
        return
    asyncio.run(_run(spec, state))


async def _run(spec: WorkerSpec, state: Any) -> None:
    def set_state(value: int) -> None:
        if state is not None:
            state.value = value

    events = EventLog(spec.log_path)
    logger = logging.getLogger(f"sessionfence.fleet.{spec.owner_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    client = redis.asyncio.Redis.from_url(
        spec.url,
        client_name=spec.client_name,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=5,
        socket_timeout=15,
    )
    factory = AsyncRedisStoreFactory(client, key_prefix=spec.prefix, owns_client=True)
    metrics = FleetMetrics()
    logger.addHandler(_EventHandler(events, metrics))
    rng = random.Random(spec.seed)

    def on_commit(ctx: TurnContext, result: RuntimeCommitResult) -> None:
        events.write(
            "committed",
            sid=ctx.session_id,
            rev=result.head_revision,
            claim_id=ctx.claim.claim_id,
            lease_fence=ctx.lease.fencing_token,
            batches=len(ctx.claim.batches),
            items=sum(len(b.items) for b in ctx.claim.batches),
        )

    async def handler(ctx: TurnContext) -> TurnResult:
        worker.current_claim = ctx.claim.claim_id
        if spec.max_turn_sleep_ms > 0:  # the "model call": long enough for a SIGSTOP to land mid-turn
            set_state(MODEL_CALL)
            try:
                await asyncio.sleep(rng.uniform(0, spec.max_turn_sleep_ms) / 1000)
            finally:
                set_state(RUNNING)
        return simulate_turn(ctx)

    worker = FleetWorker(
        factory,
        spec.owner_id,
        handler,
        lease_ttl_ms=spec.lease_ttl_ms,
        claim_ttl_ms=spec.claim_ttl_ms,
        max_batches=spec.max_batches,
        boundary=QueuedWorkClaimBoundary.IDLE,
        poll_interval_s=0.02,
        idle_recheck_ms=100,
        metrics=metrics,
        logger=logger,
        on_commit=on_commit,
    )
    worker.events = events
    worker.state = state
    worker.fleet_metrics = metrics

    def stats() -> dict[str, Any]:
        return {"counts": dict(metrics.counts), "seconds": metrics.seconds}

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != spec.parent_pid:  # orphaned: leave quietly
                worker.request_stop()
            events.write("stats", **stats())

    events.write("start", owner=spec.owner_id, pid=os.getpid(), client_name=spec.client_name)
    worker.install_signal_handlers()
    keeper = asyncio.create_task(housekeeping())
    set_state(RUNNING)
    try:
        await worker.run()
    except Exception as exc:
        events.write("crash", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=8))
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        events.write("stats", final=True, **stats())
        with contextlib.suppress(Exception):
            await factory.aclose()
        events.write("exit")
        events.close()
