"""Worker processes for tests/test_worker.py, and the turn result every test handler commits.

``python tests/worker_proc.py MODE URL KEY_PREFIX OWNER [STARTED_FILE]`` with MODE one of:

* ``drain``: an asyncio `SessionWorker` that runs until no session has due work (``run(until_idle=True)``);
* ``sigterm-sync``: `run_worker_sync` (handler in a thread): it writes STARTED_FILE, then works 1.5 s;
* ``sigterm-async``: a `SessionWorker` with ``install_signal_handlers()``; same handler, as a coroutine.

The SIGTERM modes run until signalled; the test sends SIGTERM while the handler is mid-turn.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

from sessionfence.models import GraphAppend, SessionNodeRecord, TokenLedgerEntry, TokenUsage
from sessionfence.store import AsyncRedisStoreFactory
from sessionfence.worker import SessionWorker, TurnContext, TurnResult, run_worker_sync

__all__ = ["batches_of_node", "turn_result"]


def turn_result(ctx: TurnContext) -> TurnResult:
    """Append one node naming the claimed batches, and usage of one input token per batch."""
    ids = [b.batch_id for b in ctx.claim.batches]
    node = SessionNodeRecord(
        node_id=f"n-{ctx.claim.claim_id}",
        parent_node_id=ctx.leaf_node_id,
        timestamp="2026-01-01T00:00:00Z",
        kind="event",
        event={"Protocol": {"plugin_id": "worker-test", "payload": {"batches": ids, "owner": ctx.owner_id}}},
    )
    usage = [TokenLedgerEntry("turn", "test-model", TokenUsage(len(ids), 1, 0, 0))]
    return TurnResult(graph=GraphAppend([node], node.node_id), usage_deltas=usage)


def batches_of_node(node: SessionNodeRecord) -> list[str]:
    payload = (node.model_extra or {})["event"]["Protocol"]["payload"]
    return list(payload["batches"])


async def _drain(url: str, prefix: str, owner: str) -> None:
    factory = AsyncRedisStoreFactory.from_url(url, key_prefix=prefix)

    async def handler(ctx: TurnContext) -> TurnResult:
        await asyncio.sleep(random.uniform(0, 0.01))
        return turn_result(ctx)

    try:
        await SessionWorker(factory, owner, handler, max_batches=2, poll_interval_s=0.01).run(until_idle=True)
    finally:
        await factory.aclose()


async def _sigterm_async(url: str, prefix: str, owner: str, started: Path) -> None:
    factory = AsyncRedisStoreFactory.from_url(url, key_prefix=prefix)

    async def handler(ctx: TurnContext) -> TurnResult:
        started.write_text(ctx.claim.claim_id)
        await asyncio.sleep(1.5)
        return turn_result(ctx)

    worker = SessionWorker(factory, owner, handler, poll_interval_s=0.01)
    worker.install_signal_handlers()
    try:
        await worker.run()
    finally:
        await factory.aclose()


def main(argv: list[str]) -> None:
    mode, url, prefix, owner = argv[:4]
    if mode == "drain":
        asyncio.run(_drain(url, prefix, owner))
    elif mode == "sigterm-async":
        asyncio.run(_sigterm_async(url, prefix, owner, Path(argv[4])))
    elif mode == "sigterm-sync":
        started = Path(argv[4])

        def handler(ctx: TurnContext) -> TurnResult:
            started.write_text(ctx.claim.claim_id)
            time.sleep(1.5)
            return turn_result(ctx)

        run_worker_sync(url, owner, handler, key_prefix=prefix, poll_interval_s=0.01)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
