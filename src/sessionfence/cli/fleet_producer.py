"""The producer of `sessionfence fleet`: enqueues a seeded mix of work through `submit()` and records it.

Every distinct batch id the store returns is recorded in Redis (under the run's prefix) with what the verifier
needs: session, item count, policies, availability. The mix covers what a deployment sees: user turns, process
wakes with source keys (about 10% re-submitted while the first is probably still stored: the store must return
the stored batch), session commands, delayed timers (some cancelled before they are due), EXCLUSIVE batches and
JOIN batches with merge groups. The producer keeps at most `backlog` batches queued so runs of any size stream.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..keys import NamespaceKeys
from ..models import DeliveryPolicy, MergeKey, QueuedWorkBatch, QueuedWorkBatchDraft, SlotPolicy
from ..store import AsyncRedisStoreFactory
from ..worker import submit
from .fleet_sim import fleet_key

__all__ = ["KINDS", "Producer", "ProducerStats"]

# kind -> weight in the mix
KINDS: dict[str, int] = {
    "user": 38,
    "wake": 18,
    "command": 7,
    "timer": 12,
    "exclusive": 10,
    "grouped": 15,
}
REPEAT_SHARE = 0.10  # share of wakes re-submitted right away (still stored: the store must dedup)
LATE_REPEAT_SHARE = 0.05  # share of wake draws that re-submit an older wake's key (often acked: a new batch)
TIMER_CANCEL_SHARE = 0.3  # share of timers cancelled right after enqueue (before they are due)
LATE_CANCEL_SHARE = 0.03  # share of submits followed by a cancel attempt on a recent ready batch


def _text(text: str) -> dict[str, Any]:
    return {"type": "turn_input", "input": {"items": [{"type": "text", "text": text}], "image_blobs": {}}}


@dataclass
class ProducerStats:
    submitted: int = 0
    distinct: int = 0
    repeats: int = 0
    dedup_hits: int = 0  # a repeat got the stored batch back
    dedup_new: int = 0  # a repeat came after the first was acked: a new batch
    cancelled: int = 0
    cancel_missed: int = 0  # cancel found the batch claimed or done
    queued: int = 0  # batches stored in Redis right now (refreshed while throttled)
    by_kind: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    done: bool = False


class Producer:
    def __init__(
        self,
        factory: AsyncRedisStoreFactory,
        sessions: list[str],
        turns: int,
        rng: random.Random,
        *,
        backlog: int,
        rate: float = 0.0,
    ) -> None:
        self.factory = factory
        self.client: Any = factory.client
        self.prefix = factory.key_prefix
        self.sessions = sessions
        self.turns = turns
        self.rng = rng
        self.backlog = max(1, backlog)
        self.rate = rate
        self.stats = ProducerStats()
        self._payloads: dict[str, list[Any]] = {}  # batch id -> payloads as enqueued
        self._latest_by_source: dict[tuple[str, str], str] = {}  # (session, source key) -> newest batch id
        self._wakes: dict[str, deque[str]] = {s: deque(maxlen=6) for s in sessions}  # recent wake source keys
        self._recent_ready: deque[tuple[str, str]] = deque(maxlen=12)
        self._wake_seq = 0
        self._repeat_next: tuple[str, str] | None = None

    # -- bookkeeping ---------------------------------------------------------------------------------------
    async def _record_new(self, batch: QueuedWorkBatch, kind: str, payloads: list[Any]) -> None:
        self.stats.distinct += 1
        self.stats.queued += 1
        self._payloads[batch.batch_id] = payloads
        info = {
            "sid": batch.session_id,
            "kind": kind,
            "seq": batch.enqueue_seq,
            "items": len(batch.items),
            "slot": batch.slot_policy.value,
            "delivery": batch.delivery_policy.value,
            "merge": batch.merge_key.to_wire(),
            "available_at_ms": batch.available_at_ms,
            "enqueued_at_ms": batch.enqueued_at_ms,
            "source_key": batch.source_key,
        }
        await self.client.hset(fleet_key(self.prefix, "batches"), batch.batch_id, orjson.dumps(info))

    async def _violation(self, text: str) -> None:
        self.stats.violations.append(text)
        await self.client.rpush(fleet_key(self.prefix, "violations"), text)

    async def refresh_queued(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        for sid in self.sessions:
            pipe.zcard(NamespaceKeys(self.prefix, sid).q_all(sid))
        counts = await pipe.execute()
        self.stats.queued = int(sum(counts))
        return self.stats.queued

    async def _throttle(self, started: float) -> None:
        if self.rate > 0:
            due = started + self.stats.submitted / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if self.stats.queued < self.backlog:
            return
        while await self.refresh_queued() >= self.backlog:
            await asyncio.sleep(0.02)

    # -- the mix -------------------------------------------------------------------------------------------
    def _draft(self, sid: str, kind: str, n: int) -> tuple[QueuedWorkBatchDraft, list[Any]]:
        rng = self.rng
        earliest, after = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT
        join, exclusive = SlotPolicy.JOIN, SlotPolicy.EXCLUSIVE
        if kind == "user":
            payloads = [_text(f"user message {n}.{i}") for i in range(rng.randint(1, 2))]
            return QueuedWorkBatchDraft(
                session_id=sid, delivery_policy=earliest, slot_policy=join, payloads=payloads
            ), payloads
        if kind == "wake":
            self._wake_seq += 1
            process = f"p{rng.randint(0, 3)}"
            source = f"process:{process}:event:{self._wake_seq}:wake"
            payloads = [{"type": "process_wake", "wake": {"process_id": process, "sequence": self._wake_seq}}]
            return QueuedWorkBatchDraft(
                session_id=sid,
                source_key=source,
                delivery_policy=after,
                slot_policy=join,
                merge_key=MergeKey.group("wakes"),
                payloads=payloads,
            ), payloads
        if kind == "command":
            command_kind = rng.choice(["refresh_tool_catalog", "reset_session"])
            payloads = [
                {"type": "session_command", "command": {"kind": command_kind, "reason": f"fleet {n}"}}
            ]
            return QueuedWorkBatchDraft(
                session_id=sid,
                source_key=f"command:{command_kind}:{uuid.uuid4().hex[:12]}",
                delivery_policy=after,
                slot_policy=exclusive,
                payloads=payloads,
            ), payloads
        if kind == "timer":
            due = int(time.time() * 1000) + rng.randint(150, 600)
            payloads = [{"type": "process_wake", "wake": {"timer": f"t{n}", "due_ms": due}}]
            return QueuedWorkBatchDraft(
                session_id=sid,
                delivery_policy=earliest,
                slot_policy=join,
                merge_key=MergeKey.group("timers"),
                available_at_ms=due,
                payloads=payloads,
            ), payloads
        if kind == "exclusive":
            payloads = [_text(f"exclusive request {n}")]
            return QueuedWorkBatchDraft(
                session_id=sid, delivery_policy=earliest, slot_policy=exclusive, payloads=payloads
            ), payloads
        payloads = [_text(f"grouped input {n}.{i}") for i in range(rng.randint(1, 3))]
        return QueuedWorkBatchDraft(
            session_id=sid,
            delivery_policy=earliest,
            slot_policy=join,
            merge_key=MergeKey.group(f"g{rng.randint(0, 2)}"),
            payloads=payloads,
        ), payloads

    async def _repeat(self, sid: str, source: str | None = None) -> bool:
        """Re-submit a wake's source key with other payloads: while the first batch is stored the store must
        hand it back unchanged; once it was acked a new batch is correct."""
        if source is None:
            if not self._wakes[sid]:
                return False
            source = self.rng.choice(list(self._wakes[sid]))
        known = self._latest_by_source[(sid, source)]
        draft = QueuedWorkBatchDraft(
            session_id=sid,
            source_key=source,
            delivery_policy=DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT,
            slot_policy=SlotPolicy.JOIN,
            merge_key=MergeKey.group("wakes"),
            payloads=[{"type": "process_wake", "wake": {"repeat_of": source}}],
        )
        batch = await submit(self.factory, draft)
        self.stats.repeats += 1
        self.stats.by_kind["wake_repeat"] += 1
        if batch.batch_id == known:
            self.stats.dedup_hits += 1
            got = [item.payload for item in batch.items]
            if got != self._payloads[known]:
                await self._violation(f"dedup of {source!r} in {sid} returned {known} with other payloads")
        elif batch.batch_id in self._payloads:
            await self._violation(f"dedup of {source!r} in {sid} returned an older batch {batch.batch_id}")
        else:  # the first was already acked (or cancelled): a new batch is correct, verified later
            self.stats.dedup_new += 1
            await self._record_new(batch, "wake_repeat", draft.payloads)
            self._latest_by_source[(sid, source)] = batch.batch_id
            entry: dict[str, Any] = {
                "sid": sid,
                "source_key": source,
                "previous": known,
                "new": batch.batch_id,
            }
            entry["enqueued_at_ms"] = batch.enqueued_at_ms
            await self.client.rpush(fleet_key(self.prefix, "repeats"), orjson.dumps(entry))
        return True

    async def _cancel(self, sid: str, batch_id: str) -> None:
        cancelled = await self.factory.store(sid).cancel_queued_work_batch(sid, batch_id)
        if cancelled is None:
            self.stats.cancel_missed += 1
            return
        if cancelled.batch_id != batch_id:
            await self._violation(f"cancel of {batch_id} returned {cancelled.batch_id}")
        self.stats.cancelled += 1
        self.stats.queued -= 1
        await self.client.sadd(fleet_key(self.prefix, "cancelled"), batch_id)

    async def submit_one(self, n: int) -> None:
        rng = self.rng
        sid = rng.choice(self.sessions)
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        self.stats.submitted += 1
        if self._repeat_next is not None:
            sid, source = self._repeat_next
            self._repeat_next = None
            await self._repeat(sid, source)
            return
        if kind == "wake" and rng.random() < LATE_REPEAT_SHARE and await self._repeat(sid):
            return
        draft, payloads = self._draft(sid, kind, n)
        batch = await submit(self.factory, draft)
        self.stats.by_kind[kind] += 1
        if batch.session_id != sid or len(batch.items) != len(payloads):
            await self._violation(f"enqueue into {sid} returned {batch.batch_id} of {batch.session_id}")
        if batch.batch_id in self._payloads:  # fresh source keys must never dedup
            await self._violation(f"a fresh {kind} batch in {sid} was deduplicated onto {batch.batch_id}")
            return
        await self._record_new(batch, kind, payloads)
        if draft.source_key is not None:
            self._latest_by_source[(sid, draft.source_key)] = batch.batch_id
            if kind == "wake":
                self._wakes[sid].append(draft.source_key)
                if rng.random() < REPEAT_SHARE:
                    self._repeat_next = (sid, draft.source_key)
        if kind == "timer" and rng.random() < TIMER_CANCEL_SHARE:
            await self._cancel(sid, batch.batch_id)  # not due yet: nobody can hold it, so this must succeed
        elif kind != "timer":
            self._recent_ready.append((sid, batch.batch_id))
        if self._recent_ready and rng.random() < LATE_CANCEL_SHARE:
            late_sid, late_id = rng.choice(list(self._recent_ready))
            self._recent_ready.remove((late_sid, late_id))
            await self._cancel(late_sid, late_id)  # may find it claimed or acked: both fine

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        try:
            for n in range(self.turns):
                if stop.is_set():
                    break
                await self._throttle(started)
                await self.submit_one(n)
        finally:
            self.stats.done = True
