"""Worker processes and the fault injector of `sessionfence fleet`.

`WorkerPool` owns the worker processes (multiprocessing 'spawn'): it starts them, respawns killed or crashed
ones with a new incarnation, pauses and resumes them, and stops them (SIGCONT, SIGTERM, then SIGKILL after a
grace period) so a run never leaves a process behind. Every signal is sent to a pid this pool started and
still holds.

`FaultInjector` at random intervals:
- ``kill``: SIGKILL a worker mid-whatever, then respawn it (a crash);
- ``pause``: SIGSTOP a worker for longer than the lease TTL, then SIGCONT it: it wakes up as a zombie writer
  whose lease and claim were taken over, and every write it tries must be refused;
- ``drop``: CLIENT KILL every connection of a worker, repeatedly for a short burst, so commands in flight lose
  their replies (unknown outcomes) and the runtime must recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import orjson
from redis.exceptions import RedisError

from .fleet_worker import LOADING, MODEL_CALL, STARTING, WorkerSpec, worker_main

__all__ = ["FAULT_KINDS", "FaultInjector", "WorkerPool"]

FAULT_KINDS = ("kill", "pause", "drop")


@dataclass
class _Slot:
    slot: int
    incarnation: int
    spec: WorkerSpec
    process: BaseProcess
    state: Any  # multiprocessing RawValue('b'): STARTING / RUNNING / LOADING / MODEL_CALL (fleet_worker)
    paused: bool = False
    stopping: bool = False


@dataclass
class PoolStats:
    spawned: int = 0
    respawned_after_kill: int = 0
    unexpected_exits: list[str] = field(default_factory=list)


class WorkerPool:
    def __init__(
        self,
        url: str,
        prefix: str,
        log_dir: Path,
        size: int,
        *,
        lease_ttl_ms: int,
        claim_ttl_ms: int,
        max_batches: int,
        max_turn_sleep_ms: int,
        seed: int,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.log_dir = log_dir
        self.size = size
        self.lease_ttl_ms = lease_ttl_ms
        self.claim_ttl_ms = claim_ttl_ms
        self.max_batches = max_batches
        self.max_turn_sleep_ms = max_turn_sleep_ms
        self.seed = seed
        self.stats = PoolStats()
        self.slots: dict[int, _Slot] = {}
        self._incarnations: Counter[int] = Counter()
        self._ctx = multiprocessing.get_context("spawn")
        self._closed = False

    def client_name(self, slot: int, incarnation: int) -> str:
        return f"{self.prefix}-w{slot}-{incarnation}"

    def _spawn(self, slot: int) -> None:
        self._incarnations[slot] += 1
        inc = self._incarnations[slot]
        spec = WorkerSpec(
            url=self.url,
            prefix=self.prefix,
            slot=slot,
            incarnation=inc,
            log_path=str(self.log_dir / f"worker-{slot}-{inc}.jsonl"),
            client_name=self.client_name(slot, inc),
            lease_ttl_ms=self.lease_ttl_ms,
            claim_ttl_ms=self.claim_ttl_ms,
            max_batches=self.max_batches,
            max_turn_sleep_ms=self.max_turn_sleep_ms,
            seed=self.seed * 1_000_003 + slot * 1009 + inc,
            parent_pid=os.getpid(),
        )
        # Started from the main thread on purpose: the worker's parent-death signal follows this thread.
        state = self._ctx.RawValue("b", STARTING)
        process = self._ctx.Process(target=worker_main, args=(spec, state), name=spec.owner_id, daemon=True)
        process.start()
        self.slots[slot] = _Slot(slot, inc, spec, process, state)
        self.stats.spawned += 1

    def start(self) -> None:
        for slot in range(self.size):
            self._spawn(slot)

    @property
    def incarnations(self) -> int:
        return sum(self._incarnations.values())

    def running(self) -> list[_Slot]:
        return [s for s in self.slots.values() if s.process.is_alive() and not s.stopping]

    def check(self, respawn: bool = True) -> None:
        """Respawn workers that exited on their own (a crash is reported, never hidden)."""
        for slot in list(self.slots.values()):
            if slot.stopping or slot.process.is_alive():
                continue
            slot.process.join(0)
            self.stats.unexpected_exits.append(
                f"{slot.spec.owner_id} exited with code {slot.process.exitcode}"
            )
            if respawn and not self._closed:
                self._spawn(slot.slot)

    def kill(self, slot: _Slot) -> None:
        pid = slot.process.pid
        if pid is None or not slot.process.is_alive():
            return
        slot.stopping = True
        os.kill(pid, signal.SIGKILL)
        slot.process.join(5)
        self.stats.respawned_after_kill += 1
        if not self._closed:
            self._spawn(slot.slot)

    def pause(self, slot: _Slot) -> bool:
        pid = slot.process.pid
        if pid is None or not slot.process.is_alive():
            return False
        os.kill(pid, signal.SIGSTOP)
        slot.paused = True
        return True

    def resume(self, slot: _Slot) -> None:
        if not slot.paused:
            return
        slot.paused = False
        pid = slot.process.pid
        if pid is not None and slot.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    async def stop(self, grace_s: float = 15.0) -> None:
        """Resume paused workers, SIGTERM all (they finish the current turn and leave), SIGKILL stragglers."""
        self._closed = True
        live = [s for s in self.slots.values() if s.process.exitcode is None]
        for slot in live:
            self.resume(slot)
            slot.stopping = True
            pid = slot.process.pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(s.process.is_alive() for s in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for slot in live:
            if slot.process.is_alive():
                pid = slot.process.pid
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            slot.process.join(5)

    def stop_now(self) -> None:
        """Synchronous last resort (interrupts): SIGCONT + SIGKILL every live worker and reap it."""
        self._closed = True
        for slot in self.slots.values():
            pid = slot.process.pid
            if pid is None or slot.process.exitcode is not None:
                continue
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            slot.process.join(5)


class FaultInjector:
    def __init__(
        self,
        pool: WorkerPool,
        client: Any,
        kinds: tuple[str, ...],
        rng: random.Random,
        *,
        interval_s: float,
        pause_over_ttl_ms: tuple[int, int] = (400, 1500),
        log: Any = None,
    ) -> None:
        self.pool = pool
        self.client = client
        self.kinds = kinds
        self.rng = rng
        self.interval_s = interval_s
        self.pause_over_ttl_ms = pause_over_ttl_ms
        self.counts: Counter[str] = Counter()
        self.notes: list[str] = []
        self._log = log
        self._resumers: set[asyncio.Task[None]] = set()
        self._drop_disabled = False

    def _note(self, text: str) -> None:
        self.notes.append(text)
        if self._log is not None:
            self._log(text)

    def _candidates(self, kind: str) -> list[_Slot]:
        # only workers that got as far as their loop: killing one still booting tests nothing
        candidates = [s for s in self.pool.running() if not s.paused and s.state.value != STARTING]
        if kind == "pause":
            paused = sum(1 for s in self.pool.running() if s.paused)
            # never pause the last healthy worker, never more than half of them at once
            if len(candidates) <= 1 or paused + 1 > max(1, self.pool.size // 2):
                return []
        return candidates

    async def _pick(self, kind: str, wait_s: float = 0.3) -> _Slot | None:
        """A random eligible worker; kills and pauses wait a little for one that is mid-turn (holding a lease
        and a claim), which is when they hurt most. Pauses aim at either moment of a turn (see fleet_worker):
        before the keep-alive runs (the zombie's first write is its commit) or during the model call (its first
        write is a renewal)."""
        deadline = time.monotonic() + (wait_s if kind in ("kill", "pause") else 0.0)
        if kind == "pause":
            wanted: tuple[int, ...] = (self.rng.choice((LOADING, MODEL_CALL)),)
        else:
            wanted = (LOADING, MODEL_CALL)
        while True:
            candidates = self._candidates(kind)
            if not candidates:
                return None
            busy = [s for s in candidates if s.state.value in wanted]
            if busy:
                return self.rng.choice(busy)
            if time.monotonic() >= deadline:
                return self.rng.choice(candidates)
            await asyncio.sleep(0.002)

    async def inject(self, kind: str) -> bool:
        slot = await self._pick(kind)
        if slot is None:
            return False
        detail: dict[str, Any] = {
            "at": {LOADING: "loading", MODEL_CALL: "model_call"}.get(slot.state.value, "idle")
        }
        if kind == "kill":
            self.pool.kill(slot)
        elif kind == "pause":
            if not self.pool.pause(slot):
                return False
            hold_ms = self.pool.lease_ttl_ms + self.rng.randint(*self.pause_over_ttl_ms)
            detail["hold_ms"] = hold_ms
            task = asyncio.create_task(self._resume_later(slot, hold_ms / 1000))
            self._resumers.add(task)
            task.add_done_callback(self._resumers.discard)
        else:
            if self._drop_disabled:
                return False
            killed = await self._drop(slot)
            if killed is None:
                return False
            detail["connections_killed"] = killed
        self.counts[kind] += 1
        self._record(kind, slot, detail)
        return True

    def _record(self, kind: str, slot: _Slot, detail: dict[str, Any]) -> None:
        """Append the fault to faults.jsonl beside the worker logs (what hit whom, when)."""
        event = {"t": round(time.time(), 4), "fault": kind, "target": slot.spec.owner_id, **detail}
        with contextlib.suppress(OSError), (self.pool.log_dir / "faults.jsonl").open("ab") as f:
            f.write(orjson.dumps(event) + b"\n")

    async def _resume_later(self, slot: _Slot, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        finally:
            self.pool.resume(slot)

    async def _drop(self, slot: _Slot, burst_s: float = 0.25) -> int | None:
        name = slot.spec.client_name
        deadline = time.monotonic() + burst_s
        killed = 0
        try:
            while time.monotonic() < deadline:
                for info in await self.client.client_list():
                    if info.get("name") == name:
                        with contextlib.suppress(RedisError):
                            killed += int(await self.client.client_kill_filter(_id=info["id"]))
                await asyncio.sleep(0.01)
        except RedisError as exc:  # e.g. an ACL without CLIENT LIST / CLIENT KILL on the user's Redis
            self._drop_disabled = True
            self.counts["drop_unavailable"] += 1
            self._note(f"drop faults disabled: CLIENT LIST/KILL refused ({exc})")
            return None
        self.counts["connections_killed"] += killed
        return killed

    async def run(self, stop: asyncio.Event) -> None:
        """Inject until `stop`: first one fault of each kind (shuffled), then random kinds."""
        if not self.kinds:
            await stop.wait()
            return
        opening = list(self.kinds)
        self.rng.shuffle(opening)
        misses: Counter[str] = Counter()
        while not stop.is_set():
            wait = self.rng.uniform(0.5, 1.5) * self.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                break
            from_opening = bool(opening)
            kind = opening.pop(0) if opening else self.rng.choice(self.kinds)
            if not await self.inject(kind) and from_opening and misses[kind] < 5:
                misses[kind] += 1
                opening.append(kind)  # not possible right now (e.g. too few healthy workers): try it later

    async def finish(self) -> None:
        """Stop pending pauses early: every paused worker is resumed now."""
        for task in list(self._resumers):
            task.cancel()
        for task in list(self._resumers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for slot in self.pool.slots.values():
            self.pool.resume(slot)
