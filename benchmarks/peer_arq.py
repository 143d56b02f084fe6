"""arq harness, run by the python of ``bench-results/.peers/arq`` (it imports nothing from this repository).

    python peer_arq.py enqueue URL TAG N TIMED   # TIMED jobs one at a time (each awaited), the rest concurrently
    python peer_arq.py drain URL TAG N MAX_JOBS POLL_DELAY

Jobs are ``noop`` with no arguments, queue ``<TAG>:queue``, job ids ``<TAG>-<i>``. ``drain`` runs one burst-mode
worker and prints the wall-clock time (time.time()) of the first and the N-th completion, taken in the
``after_job_end`` hook, i.e. after the result was recorded. Each mode prints one JSON line last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def enqueue(url: str, tag: str, n: int, timed: int) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=f"{tag}:queue")
    try:
        start = time.perf_counter()
        for i in range(timed):
            job = await pool.enqueue_job("noop", _job_id=f"{tag}-{i}")
            assert job is not None
        timed_s = time.perf_counter() - start
        rest = list(range(timed, n))
        for offset in range(0, len(rest), 200):
            jobs = await asyncio.gather(
                *(pool.enqueue_job("noop", _job_id=f"{tag}-{i}") for i in rest[offset:offset + 200])
            )
            assert all(jobs)
    finally:
        await pool.aclose()
    return {"timed": timed, "timed_s": timed_s}


async def drain(url: str, tag: str, n: int, max_jobs: int, poll_delay: float) -> dict[str, Any]:
    marks: dict[str, float] = {}
    count = 0

    async def after_job_end(ctx: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        now = time.time()
        marks.setdefault("first", now)
        if count == n:
            marks["done"] = now

    worker = Worker(
        functions=[noop],
        queue_name=f"{tag}:queue",
        redis_settings=RedisSettings.from_dsn(url),
        burst=True,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        after_job_end=after_job_end,
        handle_signals=False,
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return {"jobs": count, "first": marks.get("first"), "done": marks.get("done"), "complete": worker.jobs_complete}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    mode, url, tag = argv[0], argv[1], argv[2]
    if mode == "enqueue":
        out = asyncio.run(enqueue(url, tag, int(argv[3]), int(argv[4])))
    elif mode == "drain":
        out = asyncio.run(drain(url, tag, int(argv[3]), int(argv[4]), float(argv[5])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
