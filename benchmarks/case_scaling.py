"""Case 5, scaling: does the cost of a commit, a path load or a claim depend on how much is stored?

* Commit latency at graph sizes 10, 1k, 10k, 100k nodes: the same 10-node turn as case 1 (fenced, CAS, stamp,
  checkpoint, usage) appended to a chain of that many nodes. Big graphs are built (untimed) with appends of
  1,000 nodes per commit. Sizes are interleaved chunk by chunk; sizes up to 10k get a freshly built session per
  chunk so the timed turns do not grow them much; the 100k session is built once (it grows by < 3 %).
  Targets: commit p50 at 100k within 1.3x of p50 at 10.
* ActivePath load at path lengths 10, 100, 1,000 (``ActivePath(leaf)`` inside the 100k-node chain).
* FullGraph load throughput in nodes/s at 1k, 10k and 100k nodes.
* Claim cost with 100 vs 100,000 pending batches (enqueued by pipelined EVALSHA of the enqueue script):
  ``claim_ready_queued_work(max_batches=1)`` timed, then ``abandon_queued_work_claim`` (untimed) so the queue
  depth stays put. Target: claim p50 at 100k within 1.5x of p50 at 100.
"""

from __future__ import annotations

import base64
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from sessionfence import (
    ActivePath,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    HydratedSessionCheckpoint,
    PersistedTurnState,
    QueuedWorkBatchDraft,
    QueuedWorkClaimBoundary,
    RedisStore,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
    SessionExecutionLeaseFence,
    SessionNodeRecord,
    SlotPolicy,
)
from sessionfence.codec import encode_node
from sessionfence.scripts import script

from .commit_floor import AGENT_FRAMES, CONFIG, TIMESTAMP, TOOL_STATE, USAGE
from .common import ServerProbe, console, percentile, timed_interleaved_sync
from .suite import CaseResult, Ctx, Ratio, Row, Stopwatch, rate_stats, rotated, row_from_samples

CASE = "scaling"
TITLE = "5. Scaling: commit latency vs graph size, path and full loads, claim cost vs queue depth"
SID = "bench-session"
OWNER = "bench-scaling"
TTL_MS = 3_600_000
BUILD_BATCH = 1000
NODE_JSON_BYTES = 300


def nid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def _node(i: int, parent: str | None, text: str) -> SessionNodeRecord:
    return SessionNodeRecord(
        node_id=nid(i), parent_node_id=parent, timestamp=TIMESTAMP, kind="message",
        message={"role": "assistant" if i % 2 else "user", "parts": [{"kind": "text", "content": text}]},
    )


# Random base64 text sized so that a node's JSON (ids, timestamp, envelope and text) is NODE_JSON_BYTES.
TEXT_CHARS = max(16, NODE_JSON_BYTES - len(encode_node(_node(1, nid(0), ""))))


def _text() -> str:
    return base64.b64encode(os.urandom(TEXT_CHARS)).decode()[:TEXT_CHARS]


def nodes(start: int, count: int, parent: str | None) -> list[SessionNodeRecord]:
    out = []
    for i in range(start, start + count):
        out.append(_node(i, parent, _text()))
        parent = out[-1].node_id
    return out


class Chain:
    """One session whose graph is a single chain; ``size`` nodes, leaf = the last one."""

    def __init__(self, client: redis.Redis, prefix: str, namespace: str) -> None:
        self.store = RedisStore(client, namespace, key_prefix=prefix)
        lease = self.store.try_claim_session_execution_lease(SID, OWNER, TTL_MS)
        assert lease is not None
        self.fence: SessionExecutionLeaseFence = lease.fence()
        self.size = 0
        self.revision = 0

    def drop(self, admin: redis.Redis) -> None:
        keys = list(admin.scan_iter(match=self.store.keys.base + "*", count=1000))
        if keys:
            admin.unlink(*keys)

    @property
    def leaf(self) -> str | None:
        return nid(self.size - 1) if self.size else None

    def build(self, size: int) -> None:
        while self.size < size:
            count = min(BUILD_BATCH, size - self.size)
            batch = nodes(self.size, count, self.leaf)
            commit = RuntimeCommit(
                session_id=SID, expected_head_revision=self.revision, session_execution_lease=self.fence,
                config=CONFIG, graph=GraphAppend(nodes=batch, leaf_node_id=batch[-1].node_id),
            )
            self.revision = self.store.commit_runtime_state(commit).head_revision
            self.size += count

    def turns(self, count: int) -> list[RuntimeCommit]:
        """``count`` case-1-shaped turns continuing the chain (built now, committed later in order)."""
        out = []
        size, revision = self.size, self.revision
        for _ in range(count):
            batch = nodes(size, 10, nid(size - 1) if size else None)
            commit = RuntimeCommit(
                session_id=SID, expected_head_revision=revision, session_execution_lease=self.fence,
                config=CONFIG, agent_frames=AGENT_FRAMES, current_agent_frame_id="main",
                graph=GraphAppend(nodes=batch, leaf_node_id=batch[-1].node_id),
                checkpoint=HydratedSessionCheckpoint(
                    turn_state=PersistedTurnState(turn_index=revision + 1, token_usage=USAGE.usage),
                    tool_state=TOOL_STATE,
                ),
                usage_deltas=[USAGE],
            )
            stamp = RuntimeTurnCommitStamp(SID, f"turn-{revision:08d}", commit.turn_commit_hash())
            out.append(commit.with_turn_commit(stamp))
            size += 10
            revision += 1
        return out

    def commit_timed(self, commits: list[RuntimeCommit]) -> list[int]:
        latencies = []
        clock = time.perf_counter_ns
        for commit in commits:
            t0 = clock()
            self.revision = self.store.commit_runtime_state(commit).head_revision
            latencies.append(clock() - t0)
            self.size += 10
        return latencies


def _latency_row(key: str, operation: str, mode: str, latencies: list[int], per_chunk_rates: list[float],
                 server: dict[str, float] | None = None, note: str = "") -> Row:
    lat = sorted(latencies)
    return Row(key=key, system="sessionfence", operation=operation, mode=mode, rate=rate_stats(per_chunk_rates),
               p50_us=percentile(lat, 0.5) / 1e3, p99_us=percentile(lat, 0.99) / 1e3, server=server, note=note)


def _server(delta: Any, ops: int) -> dict[str, float]:
    return {"commands": delta.commands / ops, "read_events": delta.reads / ops, "cpu_us": delta.cpu_s * 1e6 / ops}


def commit_vs_size(ctx: Ctx, client: redis.Redis, prefix: str, result: CaseResult) -> Chain:
    sizes = [10, 1_000, 10_000, 100_000]
    chunks, per_chunk = ctx.pick(4, 10), ctx.pick(25, 40)
    probe = ServerProbe(ctx.admin)
    watch = time.perf_counter()
    big = Chain(client, prefix, "scale-100000")
    big.build(sizes[-1])
    console.print(f"[dim]scaling: built a {sizes[-1]:,}-node chain in {time.perf_counter() - watch:.1f} s[/dim]")
    latencies: dict[int, list[int]] = {s: [] for s in sizes}
    chunk_p50: dict[int, list[float]] = {s: [] for s in sizes}
    rates: dict[int, list[float]] = {s: [] for s in sizes}
    servers: dict[int, list[Any]] = {s: [] for s in sizes}
    for chunk in range(chunks):
        for size in rotated(sizes, chunk):
            if size == sizes[-1]:
                chain = big
            else:
                chain = Chain(client, prefix, f"scale-{size}-{chunk}")
                chain.build(size)
            commits = chain.turns(per_chunk + 3)
            chain.commit_timed(commits[:3])  # warm the connection and this session's keys
            gc.collect()
            before = probe.snapshot()
            lat = chain.commit_timed(commits[3:])
            servers[size].append(ServerProbe.delta(before, probe.snapshot()))
            latencies[size] += lat
            chunk_p50[size].append(statistics.median(lat))
            rates[size].append(len(lat) / (sum(lat) / 1e9))
            if chain is not big:
                chain.drop(ctx.admin)
    for size in sizes:
        total = servers[size][0]
        for delta in servers[size][1:]:
            total.add(delta)
        result.rows.append(_latency_row(
            f"commit_{size}", "commit a 10-node turn", f"graph of {size:,} nodes", latencies[size], rates[size],
            _server(total, len(latencies[size])),
        ))
    small, large = chunk_p50[sizes[0]], chunk_p50[sizes[-1]]
    p50_small, p50_large = result.row(f"commit_{sizes[0]}").p50_us, result.row(f"commit_{sizes[-1]}").p50_us  # type: ignore[union-attr]
    pairs = [b / a for a, b in zip(small, large, strict=True) if a]
    result.ratios.append(Ratio(
        "commit p50 at 100k nodes / p50 at 10 nodes", f"commit_{sizes[-1]}", f"commit_{sizes[0]}",
        (p50_large / p50_small) if p50_small and p50_large else None, 1.3, higher_is_better=False,
        paired_min=min(pairs) if pairs else None, paired_max=max(pairs) if pairs else None,
        note="latency ratio: lower is better; range over chunk-paired p50s",
    ))
    result.extra["commit_sizes"] = sizes
    return big


def path_and_full_loads(ctx: Ctx, client: redis.Redis, prefix: str, big: Chain, result: CaseResult) -> None:
    lengths = [10, 100, 1_000]
    ops = {10: ctx.pick(300, 1500), 100: ctx.pick(150, 600), 1_000: ctx.pick(30, 120)}
    store = big.store
    cases: dict[str, tuple[Callable[[Any], Any], Any, Any]] = {}
    for length in lengths:
        scope = ActivePath(nid(length - 1))

        def load(_i: int, scope: ActivePath = scope, length: int = length) -> None:
            read = store.load_session(scope)
            assert read is not None and len(read.graph.nodes) == length

        cases[f"path_{length}"] = (load, range(ops[length]), range(max(3, ops[length] // 20)))
    runs = ctx.runs_or(ctx.pick(1, 3))
    samples: dict[str, list[Any]] = {}
    for _ in range(runs):
        out = timed_interleaved_sync(ctx.probe, cases, ctx.pick(5, 10))
        for key, sample in out.items():
            samples.setdefault(key, []).append(sample)
    for length in lengths:
        row = row_from_samples(f"path_{length}", "sessionfence", "load_session(ActivePath(leaf))",
                               f"path of {length:,} nodes in a {big.size:,}-node graph", samples[f"path_{length}"])
        if row.p50_us:
            row.note = f"{row.p50_us / length:.1f} µs per node at p50"
        result.rows.append(row)
    # FullGraph: nodes/s
    full_sizes = [1_000, 10_000, 100_000]
    reps = {1_000: ctx.pick(10, 30), 10_000: ctx.pick(3, 8), 100_000: ctx.pick(1, 3)}
    probe = ServerProbe(ctx.admin)
    for size in full_sizes:
        chain = big if size == big.size or size >= 100_000 else Chain(client, prefix, f"full-{size}")
        if chain is not big:
            chain.build(size)
        chain.store.load_session(FullGraph())  # warm
        seconds: list[float] = []
        before = probe.snapshot()
        n_nodes = 0
        for _ in range(reps[size]):
            t0 = time.perf_counter()
            read = chain.store.load_session(FullGraph())
            seconds.append(time.perf_counter() - t0)
            assert read is not None
            n_nodes = len(read.graph.nodes)
        delta = ServerProbe.delta(before, probe.snapshot())
        srv_s = delta.usec.get("evalsha", 0) / 1e6 / reps[size]
        result.rows.append(Row(
            key=f"full_{size}", system="sessionfence", operation="load_session(FullGraph())",
            mode=f"graph of {n_nodes:,} nodes", rate=rate_stats([n_nodes / s for s in seconds]), unit="nodes/s",
            p50_us=statistics.median(seconds) * 1e6, server=_server(delta, reps[size]),
            note=f"Redis side {srv_s * 1e3:.0f} ms of {statistics.median(seconds) * 1e3:.0f} ms per load",
        ))


def claim_vs_depth(ctx: Ctx, client: redis.Redis, prefix: str, result: CaseResult) -> None:
    depths = [100, 100_000]
    chunks, per_chunk = ctx.pick(5, 10), ctx.pick(60, 150)
    stores: dict[int, tuple[RedisStore, SessionExecutionLeaseFence]] = {}
    sha = script("enqueue").sha
    for depth in depths:
        store = RedisStore(client, f"claim-{depth}", key_prefix=prefix)
        t0 = time.perf_counter()
        draft = QueuedWorkBatchDraft(
            session_id=SID, delivery_policy=DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT, slot_policy=SlotPolicy.JOIN,
            payloads=[{"job": "noop"}],
        )
        store.enqueue_queued_work(draft)  # loads the script
        for offset in range(1, depth, 1000):
            pipe = client.pipeline(transaction=False)
            for _ in range(offset, min(depth, offset + 1000)):
                call = store._codec.enqueue(draft)
                pipe.evalsha(sha, len(call.keys), *call.keys, *call.args)
            pipe.execute()
        pending = len(store.list_pending_queued_work(SID)) if depth <= 1000 else int(
            client.zcard(store.keys.q_ready(SID))
        )
        assert pending == depth, (pending, depth)
        lease = store.try_claim_session_execution_lease(SID, OWNER, TTL_MS)
        assert lease is not None
        stores[depth] = (store, lease.fence())
        console.print(f"[dim]scaling: enqueued {depth:,} batches in {time.perf_counter() - t0:.1f} s[/dim]")
    latencies: dict[int, list[int]] = {d: [] for d in depths}
    chunk_p50: dict[int, list[float]] = {d: [] for d in depths}
    rates: dict[int, list[float]] = {d: [] for d in depths}
    clock = time.perf_counter_ns
    for chunk in range(chunks):
        for depth in rotated(depths, chunk):
            store, fence = stores[depth]

            def one(store: RedisStore = store, fence: SessionExecutionLeaseFence = fence) -> int:
                t0 = clock()
                claim = store.claim_ready_queued_work(SID, fence, OWNER, QueuedWorkClaimBoundary.IDLE, TTL_MS, 1)
                elapsed = clock() - t0
                assert claim is not None and len(claim.batches) == 1
                store.abandon_queued_work_claim(claim)
                return elapsed

            for _ in range(5):
                one()
            lat = [one() for _ in range(per_chunk)]
            latencies[depth] += lat
            chunk_p50[depth].append(statistics.median(lat))
            rates[depth].append(len(lat) / (sum(lat) / 1e9))
    for depth in depths:
        result.rows.append(_latency_row(
            f"claim_{depth}", "claim_ready_queued_work(max_batches=1)", f"{depth:,} pending batches",
            latencies[depth], rates[depth], note="abandoned after each claim (untimed) to keep the depth",
        ))
    a, b = result.row(f"claim_{depths[0]}"), result.row(f"claim_{depths[-1]}")
    pairs = [y / x for x, y in zip(chunk_p50[depths[0]], chunk_p50[depths[-1]], strict=True) if x]
    value = b.p50_us / a.p50_us if a and b and a.p50_us and b.p50_us else None
    result.ratios.append(Ratio(
        "claim p50 at 100k pending / p50 at 100 pending", f"claim_{depths[-1]}", f"claim_{depths[0]}", value, 1.5,
        higher_is_better=False, paired_min=min(pairs) if pairs else None, paired_max=max(pairs) if pairs else None,
        note="latency ratio: lower is better",
    ))


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    result = CaseResult(CASE, TITLE)
    client = redis.Redis.from_url(ctx.url)
    prefix = ctx.prefix("sfscale")
    try:
        big = commit_vs_size(ctx, client, prefix, result)
        path_and_full_loads(ctx, client, prefix, big, result)
        claim_vs_depth(ctx, client, prefix, result)
    finally:
        client.close()
    result.elapsed_s = watch.elapsed
    return result
