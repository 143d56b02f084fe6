"""RQ harness: the no-op job, enqueueing (in the benchmark's process) and a fresh burst worker (a subprocess).

    python -m benchmarks.peer_rq drain URL QUEUE N

The worker is a ``SimpleWorker`` (no fork per job), burst mode, logging at WARNING; it prints the wall-clock
time (time.time()) of the first and of the N-th successful job, taken in the worker's ``handle_job_success``
(subclassed, so no extra callback commands are sent), i.e. after the result and registries were written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import redis

__all__ = ["enqueue", "noop"]

JOB = "benchmarks.peer_rq.noop"


def noop() -> None:
    return None


def enqueue(url: str, queue_name: str, tag: str, n: int, timed: int) -> dict[str, Any]:
    """``timed`` jobs one at a time (``Queue.enqueue``), the rest in ``enqueue_many`` pipelines."""
    from rq import Queue

    client = redis.Redis.from_url(url)
    try:
        queue = Queue(queue_name, connection=client)
        start = time.perf_counter()
        for i in range(timed):
            queue.enqueue(JOB, job_id=f"{tag}-{i}")
        timed_s = time.perf_counter() - start
        rest = [Queue.prepare_data(JOB, job_id=f"{tag}-{i}") for i in range(timed, n)]
        for offset in range(0, len(rest), 1000):
            queue.enqueue_many(rest[offset:offset + 1000])
        return {"timed": timed, "timed_s": timed_s, "queued": queue.count}
    finally:
        client.close()


def drain(url: str, queue_name: str, n: int) -> dict[str, Any]:
    from rq import Queue, SimpleWorker

    marks: dict[str, float] = {}
    count = 0

    class Worker(SimpleWorker):
        def handle_job_success(self, *args: Any, **kwargs: Any) -> None:
            nonlocal count
            super().handle_job_success(*args, **kwargs)
            count += 1
            now = time.time()
            marks.setdefault("first", now)
            if count == n:
                marks["done"] = now

    client = redis.Redis.from_url(url)
    try:
        worker = Worker([Queue(queue_name, connection=client)], connection=client, name=f"{queue_name}-worker")
        worker.work(burst=True, logging_level="WARNING")
    finally:
        client.close()
    return {"jobs": count, "first": marks.get("first"), "done": marks.get("done")}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    if argv[0] != "drain":
        raise SystemExit(f"unknown mode {argv[0]!r}")
    print(json.dumps(drain(argv[1], argv[2], int(argv[3]))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
