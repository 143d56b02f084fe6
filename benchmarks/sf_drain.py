"""A fresh sessionfence worker process draining queued no-op work (case 3's worker; run by the benchmark).

    python -m benchmarks.sf_drain cycle URL PREFIX N MAX_BATCHES SID [SID ...]
    python -m benchmarks.sf_drain runtime URL PREFIX N MAX_BATCHES SID [SID ...]
    python -m benchmarks.sf_drain cycle-sync URL PREFIX N MAX_BATCHES SID

``cycle-sync`` is ``cycle`` for one session on the blocking client (`RedisStore`), whose command packing is
hiredis's C code where redis-py's asyncio connection packs every argument in Python.

``cycle``: one asyncio task per session (all in this one process), each holding its session's execution lease
for the whole drain and looping ``claim_ready_queued_work`` -> ``commit_runtime_state`` that acks the claim in
the commit (fenced by the lease, CAS on the head revision, a turn stamp named after the claim so a retry is a
replay: what `sessionfence.worker.SessionWorker` sends). No graph change, no handler work.

``runtime``: the shipped `SessionWorker` itself (ready-index polling, lease claim per turn, claim, ActivePath
load, no-op handler, commit that acks and releases), which joins up to MAX_BATCHES ready batches per turn.

Prints one JSON line: wall-clock times (time.time()) of the first and the N-th acked item.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import redis
import redis.asyncio

from sessionfence import (
    AsyncRedisStoreFactory,
    GraphUnchanged,
    PersistedSessionConfig,
    QueuedWorkClaimBoundary,
    RedisStoreFactory,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
)
from sessionfence.worker import SessionWorker, TurnContext, TurnResult

TTL_MS = 120_000
OWNER = "bench-drain"
CONFIG = PersistedSessionConfig(provider_id="bench", model={"id": "noop"})


class Marks:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first: float | None = None
        self.done: float | None = None

    def acked(self, items: int) -> None:
        self.count += items
        now = time.time()
        if self.first is None:
            self.first = now
        if self.done is None and self.count >= self.n:
            self.done = now


async def cycle(factory: AsyncRedisStoreFactory, sid: str, max_batches: int, marks: Marks) -> int:
    store = factory.store(sid)
    lease = await store.try_claim_session_execution_lease(sid, OWNER, TTL_MS)
    if lease is None:
        raise RuntimeError(f"{sid}: lease busy")
    fence = lease.fence()
    head = 0
    turns = 0
    while True:
        claim = await store.claim_ready_queued_work(
            sid, fence, OWNER, QueuedWorkClaimBoundary.IDLE, TTL_MS, max_batches
        )
        if claim is None:
            break
        commit = RuntimeCommit(
            session_id=sid,
            expected_head_revision=head,
            session_execution_lease=fence,
            config=CONFIG,
            graph=GraphUnchanged(None),
            completed_queue_claims=[claim.completion()],
        )
        stamp = RuntimeTurnCommitStamp(sid, f"turn:{claim.claim_id}", commit.turn_commit_hash())
        result = await store.commit_runtime_state(commit.with_turn_commit(stamp))
        head = result.head_revision
        turns += 1
        marks.acked(sum(len(b.items) for b in claim.batches))
    await store.release_session_execution_lease(lease.completion())
    return turns


def cycle_sync(url: str, prefix: str, sid: str, max_batches: int, marks: Marks) -> int:
    client = redis.Redis.from_url(url)
    store = RedisStoreFactory(client, key_prefix=prefix).store(sid)
    try:
        lease = store.try_claim_session_execution_lease(sid, OWNER, TTL_MS)
        if lease is None:
            raise RuntimeError(f"{sid}: lease busy")
        fence = lease.fence()
        head = turns = 0
        while True:
            claim = store.claim_ready_queued_work(sid, fence, OWNER, QueuedWorkClaimBoundary.IDLE, TTL_MS, max_batches)
            if claim is None:
                break
            commit = RuntimeCommit(
                session_id=sid, expected_head_revision=head, session_execution_lease=fence, config=CONFIG,
                graph=GraphUnchanged(None), completed_queue_claims=[claim.completion()],
            )
            stamp = RuntimeTurnCommitStamp(sid, f"turn:{claim.claim_id}", commit.turn_commit_hash())
            head = store.commit_runtime_state(commit.with_turn_commit(stamp)).head_revision
            turns += 1
            marks.acked(sum(len(b.items) for b in claim.batches))
        store.release_session_execution_lease(lease.completion())
        return turns
    finally:
        client.close()


async def runtime(factory: AsyncRedisStoreFactory, max_batches: int, marks: Marks) -> int:
    turns = 0

    async def handler(ctx: TurnContext) -> TurnResult:
        return TurnResult(graph=GraphUnchanged(ctx.leaf_node_id))

    def on_commit(ctx: TurnContext, _result: Any) -> None:
        nonlocal turns
        turns += 1
        marks.acked(len(ctx.payloads))

    worker = SessionWorker(
        factory, OWNER, handler, lease_ttl_ms=TTL_MS, claim_ttl_ms=TTL_MS, max_batches=max_batches,
        on_commit=on_commit,
    )
    await worker.run(until_idle=True)
    return turns


async def main_async(mode: str, url: str, prefix: str, n: int, max_batches: int, sids: list[str]) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url, max_connections=max(16, 2 * len(sids)))
    factory = AsyncRedisStoreFactory(client, key_prefix=prefix)
    marks = Marks(n)
    try:
        if mode == "cycle":
            turns = sum(await asyncio.gather(*(cycle(factory, sid, max_batches, marks) for sid in sids)))
        elif mode == "runtime":
            turns = await runtime(factory, max_batches, marks)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        await client.aclose()
    return {"items": marks.count, "turns": turns, "first": marks.first, "done": marks.done}


def main(argv: list[str]) -> int:
    mode, url, prefix, n, max_batches, *sids = argv
    if mode == "cycle-sync":
        marks = Marks(int(n))
        turns = cycle_sync(url, prefix, sids[0], int(max_batches), marks)
        out = {"items": marks.count, "turns": turns, "first": marks.first, "done": marks.done}
    else:
        out = asyncio.run(main_async(mode, url, prefix, int(n), int(max_batches), sids))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
