"""Case 7, memory: Redis bytes per stored node and per queued item, as a ratio to the payload bytes stored.

* Nodes: N nodes of ~300 B JSON (``encode_node``: the exact bytes a node's JSON takes) appended to one session
  in commits of 1,000. Payload = the sum of those JSON bytes.
* Queued items: M batches of one item each, the payload a JSON object of ~300 B (canonical bytes).
* Reference ("raw hash"): the same node JSON bytes in one plain hash keyed by node id, the least any store can
  keep per node on Redis (it has no parent index, no order, no history).

Two measures: the sum of ``MEMORY USAGE <key> SAMPLES 0`` over the namespace's keys (the store's own data, exact),
and the server's ``used_memory`` delta around the writes (includes allocator effects and anything else the
server did meanwhile: noisy on a shared server, exact enough on the embedded one). Target: <= 1.5x for 300-byte
nodes (by MEMORY USAGE).
"""

from __future__ import annotations

import base64
import os
from typing import Any

import redis

from sessionfence import DeliveryPolicy, FullGraph, QueuedWorkBatchDraft, RedisStore, SlotPolicy
from sessionfence.canonical import canonical
from sessionfence.codec import encode_node
from sessionfence.scripts import script

from .case_scaling import Chain
from .suite import CaseResult, Ctx, Ratio, Row, Stopwatch

CASE = "memory"
TITLE = "7. Memory: Redis bytes per stored node and per queued item vs the payload bytes"
TARGET = 1.5


def _usage(client: redis.Redis, pattern: str) -> tuple[int, int]:
    total, keys = 0, 0
    for key in client.scan_iter(match=pattern, count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
        keys += 1
    return total, keys


def _used(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


def _row(key: str, operation: str, count: int, payload: int, usage: int, used_delta: int, keys: int) -> Row:
    ratio = usage / payload
    return Row(
        key=key, system="sessionfence" if not key.startswith("raw") else "raw Redis hash", operation=operation,
        mode=f"{count:,} x {payload / count:.0f} B payload", rate=None, unit="bytes",
        note=(f"{usage / count:.0f} B per item by MEMORY USAGE ({ratio:.2f}x payload, {keys} keys); "
              f"used_memory delta {used_delta / count:.0f} B per item ({used_delta / payload:.2f}x)"),
        extra={"count": count, "payload_bytes": payload, "memory_usage_bytes": usage, "used_memory_delta": used_delta,
               "ratio_memory_usage": ratio, "ratio_used_memory": used_delta / payload, "keys": keys},
    )


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    result = CaseResult(CASE, TITLE)
    n_nodes, n_items = ctx.pick(5_000, 20_000), ctx.pick(5_000, 20_000)
    client = redis.Redis.from_url(ctx.url)
    prefix = ctx.prefix("sfmem")
    admin = ctx.admin
    try:
        # -- nodes -------------------------------------------------------------------------------------------
        chain = Chain(client, prefix, "mem-nodes")
        base = chain.store.keys.base
        before_usage, _ = _usage(admin, base + "*")  # the lease written by Chain()
        before = _used(admin)
        chain.build(n_nodes)
        used_delta = _used(admin) - before
        usage, keys = _usage(admin, base + "*")
        read = chain.store.load_session(FullGraph())
        assert read is not None
        payload = sum(len(encode_node(n)) for n in read.graph.nodes)
        result.rows.append(_row("nodes", "stored graph nodes (append commits)", n_nodes, payload,
                                usage - before_usage, used_delta, keys))
        # -- the raw reference: the same bytes in one hash -------------------------------------------------
        raw_key = f"{prefix}:raw-nodes"
        before = _used(admin)
        pipe = client.pipeline(transaction=False)
        for node in read.graph.nodes:
            pipe.hset(raw_key, node.node_id, encode_node(node))
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
        raw_delta = _used(admin) - before
        raw_usage = int(admin.memory_usage(raw_key, samples=0) or 0)
        result.rows.append(_row("raw_nodes", "HSET node id -> node JSON, one hash", n_nodes, payload, raw_usage,
                                raw_delta, 1))
        del read
        # -- queued items ------------------------------------------------------------------------------------
        store = RedisStore(client, "mem-queue", key_prefix=prefix)
        sha = script("enqueue").sha
        text_len = 300 - len(canonical({"text": ""}))
        drafts = [
            QueuedWorkBatchDraft(
                session_id="bench-session", delivery_policy=DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT,
                slot_policy=SlotPolicy.JOIN,
                payloads=[{"text": base64.b64encode(os.urandom(text_len)).decode()[:text_len]}],
            )
            for _ in range(n_items)
        ]
        item_payload = sum(len(canonical(d.payloads[0])) for d in drafts)
        qbase = store.keys.base
        before = _used(admin)
        store.enqueue_queued_work(drafts[0])
        for offset in range(1, n_items, 1000):
            pipe = client.pipeline(transaction=False)
            for draft in drafts[offset:offset + 1000]:
                call = store._codec.enqueue(draft)
                pipe.evalsha(sha, len(call.keys), *call.keys, *call.args)
            pipe.execute()
        q_delta = _used(admin) - before
        q_usage, q_keys = _usage(admin, qbase + "*")
        result.rows.append(_row("queue", "queued work items (1 item per batch)", n_items, item_payload, q_usage,
                                q_delta, q_keys))
    finally:
        client.close()
    nodes_row, queue_row, raw_row = result.row("nodes"), result.row("queue"), result.row("raw_nodes")
    assert nodes_row and queue_row and raw_row
    result.ratios.append(Ratio(
        "memory per 300-byte node / payload bytes (MEMORY USAGE)", "nodes", "payload",
        nodes_row.extra["ratio_memory_usage"], TARGET, higher_is_better=False,
        note=f"a plain hash of the same bytes: {raw_row.extra['ratio_memory_usage']:.2f}x",
    ))
    result.ratios.append(Ratio(
        "memory per 300-byte node / payload bytes (used_memory delta)", "nodes", "payload",
        nodes_row.extra["ratio_used_memory"], TARGET, higher_is_better=False, headline=False,
    ))
    result.ratios.append(Ratio(
        "memory per ~300-byte queued item / payload bytes (MEMORY USAGE)", "queue", "payload",
        queue_row.extra["ratio_memory_usage"], TARGET, higher_is_better=False, headline=False,
        note="the 1.5x target is for nodes; batch + item ids, state and indexes are per item",
    ))
    result.extra = {"nodes": n_nodes, "items": n_items,
                    "node_json_bytes_mean": nodes_row.extra["payload_bytes"] / n_nodes}
    result.elapsed_s = watch.elapsed
    return result
