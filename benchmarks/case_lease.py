"""Case 2, lease cycle: try_claim + release of a fenced session lease vs redis-py ``Lock`` and a hand-written lock.

One op = acquire then release, uncontended, on one connection, each system on its own key:

* sessionfence: ``try_claim_session_execution_lease`` (1 EVALSHA: fencing token, owner, TTL) and
  ``release_session_execution_lease(lease.completion())`` (1 EVALSHA).
* redis-py ``Lock`` (one Lock object reused; each acquire draws a new token): ``SET NX PX``, then its Lua
  compare-and-delete by EVALSHA. No fencing token.
* hand-written: ``SET key token NX PX 30000`` then ``EVALSHA`` of a 3-line compare-and-delete.

Sync and asyncio groups, each interleaved chunk by chunk. Target: sessionfence >= 1.0x redis-py Lock.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import redis
import redis.asyncio

from sessionfence import AsyncRedisStore, RedisStore

from .common import Sample, console, timed_interleaved_async, timed_interleaved_sync
from .suite import CaseResult, Ctx, Stopwatch, row_from_samples

CASE = "lease"
TITLE = "2. Lease cycle: fenced try_claim + release vs redis-py Lock and SET NX PX + Lua compare-and-delete"
TTL_MS = 30_000
SID = "bench-session"
OWNER = "bench-owner"
CAD_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

SYSTEMS = {
    "sf": ("sessionfence", "try_claim + release (fenced lease)"),
    "lock": (f"redis-py Lock {redis.__version__}", "acquire + release"),
    "raw": ("hand-written", "SET NX PX + EVALSHA compare-and-delete"),
}


def _sync_ops(client: redis.Redis, prefix: str) -> dict[str, Any]:
    store = RedisStore(client, "lease", key_prefix=prefix)
    lock = client.lock(f"{prefix}:redis-py-lock", timeout=TTL_MS / 1000)
    raw_key = f"{prefix}:raw-lock"
    cad = client.register_script(CAD_LUA)
    cad(keys=[raw_key], args=["x"])  # load it: the timed calls are EVALSHA

    def sf(_i: int) -> None:
        lease = store.try_claim_session_execution_lease(SID, OWNER, TTL_MS)
        assert lease is not None
        store.release_session_execution_lease(lease.completion())

    def lock_cycle(_i: int) -> None:
        assert lock.acquire(blocking=False)
        lock.release()

    def raw(_i: int) -> None:
        token = secrets.token_hex(16)
        assert client.set(raw_key, token, nx=True, px=TTL_MS)
        assert cad(keys=[raw_key], args=[token]) == 1

    return {"sf": sf, "lock": lock_cycle, "raw": raw}


def _async_ops(client: redis.asyncio.Redis, prefix: str) -> dict[str, Any]:
    store = AsyncRedisStore(client, "lease-async", key_prefix=prefix)
    lock = client.lock(f"{prefix}:redis-py-lock-async", timeout=TTL_MS / 1000)
    raw_key = f"{prefix}:raw-lock-async"
    cad = client.register_script(CAD_LUA)

    async def sf(_i: int) -> None:
        lease = await store.try_claim_session_execution_lease(SID, OWNER, TTL_MS)
        assert lease is not None
        await store.release_session_execution_lease(lease.completion())

    async def lock_cycle(_i: int) -> None:
        assert await lock.acquire(blocking=False)
        await lock.release()

    async def raw(_i: int) -> None:
        token = secrets.token_hex(16)
        assert await client.set(raw_key, token, nx=True, px=TTL_MS)
        assert await cad(keys=[raw_key], args=[token]) == 1

    return {"sf": sf, "lock": lock_cycle, "raw": raw}


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    result = CaseResult(CASE, TITLE)
    runs = ctx.runs_or(ctx.pick(3, 5))
    ops, warmup, chunks = ctx.pick(600, 2000), ctx.pick(50, 200), ctx.pick(10, 20)
    budget = ctx.pick(1.5, 4.0)
    prefix = ctx.prefix("sflease")
    samples: dict[str, list[Sample]] = {}
    client = redis.Redis.from_url(ctx.url)
    try:
        for run_index in range(runs):
            sync_ops = _sync_ops(client, prefix)
            out = timed_interleaved_sync(
                ctx.probe,
                {f"{name}_sync": (op, range(ops), range(warmup)) for name, op in sync_ops.items()},
                chunks,
                budget,
            )

            async def async_group() -> dict[str, Sample]:
                aclient = redis.asyncio.Redis.from_url(ctx.url)
                try:
                    async_ops = _async_ops(aclient, prefix)
                    return await timed_interleaved_async(
                        ctx.probe,
                        {f"{name}_async": [(op, range(ops), range(warmup))] for name, op in async_ops.items()},
                        chunks,
                        budget,
                    )
                finally:
                    await aclient.aclose()

            out |= asyncio.run(async_group())
            for key, sample in out.items():
                samples.setdefault(key, []).append(sample)
            console.print(
                f"[dim]lease run {run_index + 1}/{runs}: "
                + ", ".join(f"{k}={v.rate:,.0f}/s" for k, v in out.items())
                + "[/dim]"
            )
    finally:
        client.close()
    for mode in ("sync", "async"):
        for name, (system, operation) in SYSTEMS.items():
            key = f"{name}_{mode}"
            result.rows.append(row_from_samples(
                key, system, operation, "sync, 1 conn" if mode == "sync" else "asyncio, 1 conn", samples[key]
            ))
    result.ratio("lease sync / redis-py Lock sync", "sf_sync", "lock_sync", 1.0)
    result.ratio("lease asyncio / redis-py Lock asyncio", "sf_async", "lock_async", 1.0)
    result.ratio("lease sync / SET NX PX + Lua CAD sync", "sf_sync", "raw_sync", 1.0, headline=False,
                 note="the hand-written lock is the 2-RT floor of any acquire + release")
    result.ratio("lease asyncio / SET NX PX + Lua CAD asyncio", "sf_async", "raw_async", 1.0, headline=False)
    result.extra = {"ops_per_run": ops, "runs": runs, "ttl_ms": TTL_MS}
    result.elapsed_s = watch.elapsed
    return result
