"""Turn-commit throughput: sessionfence against a raw one-EVALSHA floor doing the same writes with the same bytes.

    .venv/bin/python -m benchmarks.commit_floor [--redis-url URL] [--quick] [--out DIR] [--runs N]

One op of the sessionfence rows is ``commit_runtime_state`` of a 10-node ``GraphAppend`` turn: fenced by a live
session execution lease, ``expected_head_revision`` CAS, a turn stamp (``turn_commit_hash``), a checkpoint with a
small ``tool_state``, one usage delta, 10 new nodes of about 300 bytes of JSON each with chained parent links.
Commits are built (models, stamp hash) before the timed loop; the "+ build" row also times building them.

One op of the floor rows is one EVALSHA of a minimal script writing what that commit writes, with the bytes
sessionfence sends, encoded once up front: HGET + compare of the head revision, HSET of the head fields (config
and agent frames JSON included), per node an XADD to the order stream and an HSET of ``<entry id> <node bytes>``,
HSETNX of the two blobs (tool state, checkpoint manifest), HINCRBY of the four ledger fields, XADD of the commit
event with MAXLEN ~ 10000, HSET of the turn record. No lease, no schema or key-type guards, no replay lookup, no
node-collision check, no TIME. ``verify_same_bytes`` checks the stored bytes match before anything is timed.

Every case runs sequentially on one connection (sync and asyncio) and with 16 concurrent asyncio clients in one
event loop (each on its own session), interleaved run by run; PING gives the loopback/client ceiling. Each run
uses a fresh namespace under a unique key prefix, deleted after the run. Then a cProfile of sync commits and a
profiler-free stage breakdown show where client time goes.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio

from sessionfence import AsyncRedisStore, RedisStore
from sessionfence.canonical import canonical, dumps, sha256_hex
from sessionfence.codec import encode_node
from sessionfence.keys import NamespaceKeys
from sessionfence.models import (
    GraphAppend,
    HydratedSessionCheckpoint,
    PersistedSessionConfig,
    PersistedTurnState,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
    SessionCheckpoint,
    SessionExecutionLeaseFence,
    SessionNodeRecord,
    TokenLedgerEntry,
    TokenUsage,
)
from sessionfence.scripts import run_sync
from sessionfence.validation import check_commit

from .common import (
    Lane,
    Sample,
    ServerHandle,
    ServerProbe,
    base_parser,
    console,
    delete_prefix,
    fmt_rate,
    fmt_us,
    machine_info,
    print_table,
    redis_server,
    summarize,
    timed_interleaved_async,
    timed_interleaved_sync,
    write_results,
)

NAME = "commit_floor"
SID = "bench-session"
OWNER = "bench-worker"
LEASE_TTL_MS = 3_600_000
NODES_PER_TURN = 10
NODE_JSON_BYTES = 300
CONCURRENCY = 16
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Plan:
    runs: int
    warmup: int  # per sequential loop
    warmup_concurrent: int  # per client
    ping_ops: int
    floor_ops: int
    sf_ops: int
    build_ops: int
    floor_ops_per_client: int
    sf_ops_per_client: int
    profile_ops: int  # cProfile
    stage_ops: int  # profiler-free stage timing, per pass
    chunks: int  # interleaving granularity: every case's timed items are cut into this many chunks
    # Wall-time caps per run and group: on a loaded machine rounds stop early (same rounds for every case).
    budget_sync_s: float
    budget_async_s: float
    budget_concurrent_s: float


FULL = Plan(
    runs=5, warmup=150, warmup_concurrent=15, ping_ops=3000, floor_ops=2000, sf_ops=1200, build_ops=600,
    floor_ops_per_client=250, sf_ops_per_client=120, profile_ops=2000, stage_ops=600, chunks=20,
    budget_sync_s=5.0, budget_async_s=3.5, budget_concurrent_s=3.0,
)
QUICK = Plan(
    runs=3, warmup=40, warmup_concurrent=5, ping_ops=800, floor_ops=500, sf_ops=300, build_ops=150,
    floor_ops_per_client=50, sf_ops_per_client=30, profile_ops=400, stage_ops=300, chunks=10,
    budget_sync_s=1.6, budget_async_s=1.2, budget_concurrent_s=1.0,
)


# ---- the turn ----------------------------------------------------------------------------------------------

CONFIG = PersistedSessionConfig(
    provider_id="openai",
    model={"id": "gpt-bench", "limits": {"context_window_tokens": 200_000, "max_output_tokens": 16_384}},
)
AGENT_FRAMES: list[Any] = [{"id": "main", "kind": "root", "model": "gpt-bench"}]
TOOL_STATE = {
    "cwd": "/srv/agent/workspace",
    "open_files": ["src/app.py", "README.md"],
    "todo": [{"id": 1, "text": "write the benchmark", "done": False}],
}
USAGE = TokenLedgerEntry("agent", "gpt-bench", TokenUsage(1200, 350, 800, 64))
TIMESTAMP = "2026-11-24T12:00:00.000Z"
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "


# Per case: one (namespace keys, warm-up commits) per lane, to check every commit was applied.
Checks = dict[str, list[tuple[NamespaceKeys, int]]]


def node_id(turn: int, j: int) -> str:
    return f"{turn:08x}-0000-4000-8000-{j:012x}"


class Turns:
    """Deterministic 10-node turns with random (incompressible) text sized to ~300-byte node JSON."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        probe = self._node(0, 1, "")
        self.text_len = max(16, NODE_JSON_BYTES - len(dumps(probe.to_wire())))

    @staticmethod
    def _node(turn: int, j: int, text: str) -> SessionNodeRecord:
        if j > 0:
            parent: str | None = node_id(turn, j - 1)
        else:
            parent = node_id(turn - 1, NODES_PER_TURN - 1) if turn > 0 else None
        return SessionNodeRecord(
            node_id=node_id(turn, j),
            parent_node_id=parent,
            timestamp=TIMESTAMP,
            kind="message",
            message={"role": "assistant" if j % 2 else "user", "parts": [{"kind": "text", "content": text}]},
        )

    def texts(self) -> list[str]:
        """The next turn's 10 node texts (drawn in sequence from the seeded generator)."""
        rng = self.rng
        return ["".join(rng.choices(_ALPHABET, k=self.text_len)) for _ in range(NODES_PER_TURN)]

    def commit(
        self, turn: int, texts: Sequence[str], fence: SessionExecutionLeaseFence | None = None, stamp: bool = True
    ) -> RuntimeCommit:
        """What an agent runtime builds per turn; ``expected_head_revision`` is the turn index (CAS)."""
        nodes = [self._node(turn, j, texts[j]) for j in range(NODES_PER_TURN)]
        commit = RuntimeCommit(
            session_id=SID,
            expected_head_revision=turn,
            session_execution_lease=fence,
            config=CONFIG,
            agent_frames=AGENT_FRAMES,
            current_agent_frame_id="main",
            graph=GraphAppend(nodes=nodes, leaf_node_id=nodes[-1].node_id),
            checkpoint=HydratedSessionCheckpoint(
                turn_state=PersistedTurnState(turn_index=turn + 1, token_usage=USAGE.usage),
                tool_state=TOOL_STATE,
            ),
            usage_deltas=[USAGE],
        )
        if not stamp:
            return commit
        return commit.with_turn_commit(RuntimeTurnCommitStamp(SID, f"turn-{turn:08d}", commit.turn_commit_hash()))

    def pool(self, count: int) -> list[RuntimeCommit]:
        return [self.commit(turn, self.texts()) for turn in range(count)]


# ---- the floor ---------------------------------------------------------------------------------------------

FLOOR_LUA = """
-- KEYS: 1 head, 2 nodes, 3 node_order, 4 blobs, 5 ledger, 6 events, 7 turns
-- ARGV: expected, config, frames, current_frame, checkpoint_ref, leaf, turn_field, record_prefix, turn_id,
--       n_blobs, (ref, body)*, n_ledger, (field, delta)*, n_nodes, (id, body)*
local actual = redis.call('HGET', KEYS[1], 'head_revision') or '0'
if actual ~= ARGV[1] then
  return redis.error_reply('FLOOR_CONFLICT ' .. actual)
end
local rev = string.format('%.0f', tonumber(actual) + 1)
redis.call('HSET', KEYS[1], 'head_revision', rev, 'config', ARGV[2], 'agent_frames', ARGV[3],
  'current_agent_frame_id', ARGV[4], 'checkpoint_ref', ARGV[5], 'leaf_node_id', ARGV[6])
local i = 10
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HSETNX', KEYS[4], ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HINCRBY', KEYS[5], ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
i = i + 1
local n = tonumber(ARGV[i])
for _ = 1, n do
  local entry = redis.call('XADD', KEYS[3], '*', 'n', ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i + 1], entry .. ' ' .. ARGV[i + 2])
  i = i + 2
end
redis.call('XADD', KEYS[6], 'MAXLEN', '~', '10000', '*', 'rev', rev, 'turn', ARGV[9], 'nodes', tostring(n),
  'leaf', ARGV[6])
redis.call('HSET', KEYS[7], ARGV[7], ARGV[8] .. rev .. '}')
return rev
"""


# The floor exactly as /work/shared/reference/peer-baselines.md measured it (15 commands), for calibration
# against that document: it writes less than a sessionfence commit, so it is not the ratio's denominator.
PEER_FLOOR_LUA = """
-- KEYS: 1 head, 2 nodes, 3 events, 4 ledger
-- ARGV: expected, leaf, checkpoint_ref, tokens, n_nodes, (id, body)*
local actual = redis.call('HGET', KEYS[1], 'head_revision') or '0'
if actual ~= ARGV[1] then
  return redis.error_reply('FLOOR_CONFLICT ' .. actual)
end
local rev = string.format('%.0f', tonumber(actual) + 1)
redis.call('HSET', KEYS[1], 'head_revision', rev, 'leaf_node_id', ARGV[2], 'checkpoint_ref', ARGV[3])
local i = 5
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '10000', '*', 'rev', rev)
redis.call('HINCRBY', KEYS[4], 'tokens', ARGV[4])
return rev
"""


def peer_floor_args(commit: RuntimeCommit, full_args: Sequence[Any]) -> list[Any]:
    graph = commit.graph
    assert isinstance(graph, GraphAppend)
    args: list[Any] = [str(commit.expected_head_revision), graph.leaf_node_id or "", full_args[4],
                       USAGE.usage.total(), len(graph.nodes)]
    for node in graph.nodes:
        args += [node.node_id, encode_node(node)]
    return args


def floor_args(commit: RuntimeCommit) -> list[Any]:
    """The bytes sessionfence's codec sends for ``commit``, laid out for FLOOR_LUA (encoded once, untimed)."""
    cp = commit.checkpoint
    tool_bytes = canonical(cp.tool_state)
    tool_ref = sha256_hex(tool_bytes)
    manifest = SessionCheckpoint(turn_state=cp.turn_state, tool_state_ref=tool_ref)
    manifest_bytes = canonical(manifest.to_wire())
    checkpoint_ref = sha256_hex(manifest_bytes)
    graph = commit.graph
    assert isinstance(graph, GraphAppend) and commit.turn_commit is not None
    stamp = commit.turn_commit
    record_prefix = (
        b'{"schema_version":1,"turn_commit_hash":' + dumps(stamp.turn_commit_hash)
        + b',"checkpoint_ref":"' + checkpoint_ref.encode() + b'","manifest":' + manifest_bytes
        + b',"head_revision":'
    )
    args: list[Any] = [
        str(commit.expected_head_revision), dumps(commit.config.to_wire()), dumps(commit.agent_frames),
        commit.current_agent_frame_id, checkpoint_ref, graph.leaf_node_id or "",
        dumps([stamp.session_id, stamp.turn_id]), record_prefix, stamp.turn_id,
        2, tool_ref, tool_bytes, checkpoint_ref, manifest_bytes,
    ]
    ledger_key = dumps([USAGE.source, USAGE.model])
    usage = USAGE.usage
    deltas = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.reasoning_tokens)
    args.append(len(deltas))
    for index, delta in enumerate(deltas, start=2):
        args += [ledger_key + b"\0" + str(index).encode(), delta]
    args.append(len(graph.nodes))
    for node in graph.nodes:
        args += [node.node_id, encode_node(node)]
    return args


def floor_keys(prefix: str, namespace: str) -> list[str]:
    k = NamespaceKeys(prefix, namespace)
    return [k.head, k.nodes, k.node_order, k.blobs, k.ledger, k.events, k.turns]


# ---- the benchmark -----------------------------------------------------------------------------------------


class Bench:
    def __init__(self, server: ServerHandle, plan: Plan) -> None:
        self.url = server.url
        self.plan = plan
        self.prefix = "sfbench" + uuid.uuid4().hex[:8]
        self.admin = redis.Redis.from_url(self.url)  # INFO probe and cleanup: its own connection
        self.probe = ServerProbe(self.admin)
        self.sync_client = redis.Redis.from_url(self.url)
        self.floor_sha: str = self.admin.script_load(FLOOR_LUA)
        self.peer_floor_sha: str = self.admin.script_load(PEER_FLOOR_LUA)
        self.turns = Turns()
        per_loop = max(
            plan.sf_ops, plan.sf_ops_per_client, plan.floor_ops, plan.floor_ops_per_client, plan.profile_ops,
            plan.stage_ops,
        )
        self.pool_size = plan.warmup + per_loop
        t0 = time.perf_counter()
        self.pool = self.turns.pool(self.pool_size)
        self.pool_build_s = time.perf_counter() - t0
        self.floor_pool = [floor_args(c) for c in self.pool]
        self.peer_floor_pool = [peer_floor_args(c, a) for c, a in zip(self.pool, self.floor_pool, strict=True)]
        self.build_texts = [self.turns.texts() for _ in range(plan.warmup + plan.build_ops)]
        self.samples: dict[str, list[Sample]] = {}
        self.counter = 0

    def close(self) -> None:
        delete_prefix(self.admin, self.prefix)
        self.sync_client.close()
        self.admin.close()

    def namespace(self, label: str) -> str:
        self.counter += 1
        return f"{label}-{self.counter}"

    def cleanup(self) -> None:
        delete_prefix(self.admin, self.prefix)

    # -- helpers ---------------------------------------------------------------------------------------------
    def sync_store(self, client: redis.Redis, label: str) -> tuple[RedisStore, SessionExecutionLeaseFence]:
        store = RedisStore(client, self.namespace(label), key_prefix=self.prefix)
        lease = store.try_claim_session_execution_lease(SID, OWNER, LEASE_TTL_MS)
        assert lease is not None
        return store, lease.fence()

    async def async_store(
        self, client: redis.asyncio.Redis, label: str
    ) -> tuple[AsyncRedisStore, SessionExecutionLeaseFence]:
        store = AsyncRedisStore(client, self.namespace(label), key_prefix=self.prefix)
        lease = await store.try_claim_session_execution_lease(SID, OWNER, LEASE_TTL_MS)
        assert lease is not None
        return store, lease.fence()

    def fenced(self, fence: SessionExecutionLeaseFence, count: int) -> list[RuntimeCommit]:
        return [c.with_session_execution_lease(fence) for c in self.pool[:count]]

    def floor_calls(self, label: str, count: int) -> tuple[NamespaceKeys, list[tuple[Any, ...]]]:
        namespace = self.namespace(label)
        keys = floor_keys(self.prefix, namespace)
        calls = [(self.floor_sha, len(keys), *keys, *args) for args in self.floor_pool[:count]]
        return NamespaceKeys(self.prefix, namespace), calls

    def check_head(self, namespace_keys: NamespaceKeys, expected: int) -> None:
        actual = self.admin.hget(namespace_keys.head, "head_revision")
        if actual is None or int(actual) != expected:
            raise RuntimeError(f"{namespace_keys.head}: head_revision {actual!r}, expected {expected}")

    def check_heads(self, checks: Checks, samples: dict[str, Sample]) -> None:
        """Every commit of every lane applied: head revision = warm-up + timed commits of that lane."""
        for case, lanes in checks.items():
            for (keys, warmup), timed in zip(lanes, samples[case].lane_ops, strict=True):
                self.check_head(keys, warmup + timed)

    # -- case groups: each returns its lanes and the heads to check afterwards ---------------------------------
    # A lane is (op, timed items, warm-up items). Cases of one group are timed interleaved, chunk by chunk.

    def floor_lane(self, client: Any, label: str, count: int, warmup: int) -> tuple[Lane, tuple[NamespaceKeys, int]]:
        keys, calls = self.floor_calls(label, warmup + count)
        evalsha = client.evalsha
        return (lambda a: evalsha(*a), calls[warmup:], calls[:warmup]), (keys, warmup)

    def sync_group(self) -> tuple[dict[str, Lane], Checks]:
        plan, w, client = self.plan, self.plan.warmup, self.sync_client
        checks: Checks = {}
        lanes: dict[str, Lane] = {"ping_sync": (lambda _i: client.ping(), range(plan.ping_ops), range(w))}

        peer = NamespaceKeys(self.prefix, self.namespace("peer-floor"))
        keys = [peer.head, peer.nodes, peer.events, peer.ledger]
        calls = [(self.peer_floor_sha, len(keys), *keys, *a) for a in self.peer_floor_pool[: w + plan.floor_ops]]
        evalsha = client.evalsha
        lanes["peer_floor_sync"] = (lambda a: evalsha(*a), calls[w:], calls[:w])
        checks["peer_floor_sync"] = [(peer, w)]

        lanes["floor_sync"], check = self.floor_lane(client, "floor-sync", plan.floor_ops, w)
        checks["floor_sync"] = [check]

        store, fence = self.sync_store(client, "sf-sync")
        commits = self.fenced(fence, w + plan.sf_ops)
        lanes["sf_sync"] = (store.commit_runtime_state, commits[w:], commits[:w])
        checks["sf_sync"] = [(store.keys, w)]

        # Building the models and the stamp hash inside the timed loop too: the whole per-turn client cost.
        build_store, build_fence = self.sync_store(client, "sf-build")
        turns, texts = self.turns, self.build_texts

        def build_and_commit(turn: int) -> object:
            return build_store.commit_runtime_state(turns.commit(turn, texts[turn], build_fence))

        lanes["sf_sync_build"] = (build_and_commit, range(w, w + plan.build_ops), range(w))
        checks["sf_sync_build"] = [(build_store.keys, w)]
        return lanes, checks

    async def async_group(self, clients: list[redis.asyncio.Redis]) -> tuple[dict[str, Sequence[Lane]], Checks]:
        """Sequential asyncio cases on one connection each, and the 16-client cases (16 sessions each)."""
        plan, w, wc = self.plan, self.plan.warmup, self.plan.warmup_concurrent
        pool = iter(clients)
        checks: Checks = {}
        cases: dict[str, Sequence[Lane]] = {}
        ping_client = next(pool)
        cases["ping_async"] = [(lambda _i: ping_client.ping(), range(plan.ping_ops), range(w))]

        lane, check = self.floor_lane(next(pool), "floor-async", plan.floor_ops, w)
        cases["floor_async"] = [lane]
        checks["floor_async"] = [check]

        store, fence = await self.async_store(next(pool), "sf-async")
        commits = self.fenced(fence, w + plan.sf_ops)
        cases["sf_async"] = [(store.commit_runtime_state, commits[w:], commits[:w])]
        checks["sf_async"] = [(store.keys, w)]

        floor_lanes = []
        for _ in range(CONCURRENCY):
            lane, check = self.floor_lane(next(pool), "floor-conc", plan.floor_ops_per_client, wc)
            floor_lanes.append(lane)
            checks.setdefault("floor_concurrent", []).append(check)
        cases["floor_concurrent"] = floor_lanes

        sf_lanes: list[Lane] = []
        for _ in range(CONCURRENCY):
            store, fence = await self.async_store(next(pool), "sf-conc")
            commits = self.fenced(fence, wc + plan.sf_ops_per_client)
            sf_lanes.append((store.commit_runtime_state, commits[wc:], commits[:wc]))
            checks.setdefault("sf_concurrent", []).append((store.keys, wc))
        cases["sf_concurrent"] = sf_lanes
        return cases, checks

    def async_clients_needed(self) -> int:
        return 3 + 2 * CONCURRENCY


# Case id -> (label, mode, floor case id for the ratio), in table order.
CASES: dict[str, tuple[str, str, str | None]] = {
    "ping_sync": ("raw ceiling: PING", "sync, 1 conn", None),
    "ping_async": ("raw ceiling: PING", "asyncio, 1 conn", None),
    "peer_floor_sync": ("peer-baselines floor (15 cmds)", "sync, 1 conn", None),
    "floor_sync": ("raw floor: 1 EVALSHA", "sync, 1 conn", None),
    "sf_sync": ("sessionfence commit", "sync, 1 conn", "floor_sync"),
    "sf_sync_build": ("sessionfence build+hash+commit", "sync, 1 conn", "floor_sync"),
    "floor_async": ("raw floor: 1 EVALSHA", "asyncio, 1 conn", None),
    "sf_async": ("sessionfence commit", "asyncio, 1 conn", "floor_async"),
    "floor_concurrent": ("raw floor: 1 EVALSHA", f"asyncio, {CONCURRENCY} clients", None),
    "sf_concurrent": ("sessionfence commit", f"asyncio, {CONCURRENCY} clients", "floor_concurrent"),
}
HEADLINE = ("sf_sync", "floor_sync")
ASYNC_SEQUENTIAL = ("ping_async", "floor_async", "sf_async")
ASYNC_CONCURRENT = ("floor_concurrent", "sf_concurrent")


def run_cases(bench: Bench, runner: asyncio.Runner) -> None:
    """Per run: the sync cases interleaved, then the asyncio sequential ones, then the 16-client ones."""
    plan = bench.plan
    chunks = plan.chunks

    async def async_run() -> dict[str, Sample]:
        clients = [redis.asyncio.Redis.from_url(bench.url) for _ in range(bench.async_clients_needed())]
        try:
            cases, checks = await bench.async_group(clients)
            sequential = {c: cases[c] for c in ASYNC_SEQUENTIAL}
            out = await timed_interleaved_async(bench.probe, sequential, chunks, plan.budget_async_s)
            # Fewer, longer chunks here: a chunk ends when its slowest client does, so short chunks would idle
            # the faster clients at every chunk's tail and understate concurrent throughput.
            concurrent = {c: cases[c] for c in ASYNC_CONCURRENT}
            out |= await timed_interleaved_async(
                bench.probe, concurrent, max(2, chunks // 4), plan.budget_concurrent_s
            )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        bench.check_heads(checks, out)
        return out

    for run in range(plan.runs):
        lanes, checks = bench.sync_group()
        results = timed_interleaved_sync(bench.probe, lanes, chunks, plan.budget_sync_s)
        bench.check_heads(checks, results)
        bench.cleanup()
        results |= runner.run(async_run())
        bench.cleanup()
        for case, sample in results.items():
            bench.samples.setdefault(case, []).append(sample)
        shown = ", ".join(f"{c}={results[c].rate:,.0f}/s" for c in ("floor_sync", "sf_sync", "sf_concurrent"))
        console.print(f"[dim]run {run + 1}/{bench.plan.runs}: {shown}[/dim]")


# ---- same-bytes check --------------------------------------------------------------------------------------

_COMMITTED_AT = re.compile(rb',"committed_at_ms":\d+')


def verify_same_bytes(bench: Bench, turns: int = 3) -> list[str]:
    """Commit ``turns`` turns both ways into two namespaces and compare what is stored."""
    store, fence = bench.sync_store(bench.sync_client, "verify-sf")
    for commit in bench.fenced(fence, turns):
        store.commit_runtime_state(commit)
    floor_ns = bench.namespace("verify-floor")
    keys = floor_keys(bench.prefix, floor_ns)
    for args in bench.floor_pool[:turns]:
        bench.sync_client.evalsha(bench.floor_sha, len(keys), *keys, *args)
    a, b = store.keys, NamespaceKeys(bench.prefix, floor_ns)
    problems = []

    def get(key: str) -> dict[bytes, bytes]:
        return cast(dict[bytes, bytes], bench.admin.hgetall(key))

    def body(value: bytes) -> bytes:
        return value.split(b" ", 1)[1]  # strip the stream entry id (a timestamp)

    if {f: body(v) for f, v in get(a.nodes).items()} != {f: body(v) for f, v in get(b.nodes).items()}:
        problems.append("node bytes differ")
    if get(a.blobs) != get(b.blobs):
        problems.append("blob bytes differ")
    head_a, head_b = get(a.head), get(b.head)
    for name in (b"head_revision", b"config", b"agent_frames", b"current_agent_frame_id", b"checkpoint_ref",
                 b"leaf_node_id"):
        if head_a.get(name) != head_b.get(name):
            problems.append(f"head field {name.decode()} differs")
    turns_a = {f: _COMMITTED_AT.sub(b"", v) for f, v in get(a.turns).items()}
    if turns_a != get(b.turns):
        problems.append("turn records differ")
    ledger_a = {f: v for f, v in get(a.ledger).items() if not f.endswith(b"\0n")}
    if ledger_a != get(b.ledger):
        problems.append("ledger fields differ")
    bench.cleanup()
    return problems


# ---- where client time goes --------------------------------------------------------------------------------

_CATEGORIES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("socket send/recv (incl. waiting for Redis)", lambda f, n: f == "~" and any(
        s in n for s in ("recv", "send", "poll", "select", "readinto"))),
    ("hiredis reply parser", lambda f, n: "hiredis" in n or "hiredis" in f),
    ("redis-py (Python code)", lambda f, n: "/redis/" in f),
    ("pydantic (model construction, copies)", lambda f, n: "pydantic" in f or "pydantic" in n),
    ("orjson dumps", lambda f, n: "orjson" in n),
    ("sha256 (hashlib)", lambda f, n: "_hashlib" in n or "sha256" in n or "hexdigest" in n),
    ("sessionfence validation.py", lambda f, n: f.endswith("sessionfence/validation.py")),
    ("sessionfence canonical.py (check_json, scrub)", lambda f, n: f.endswith("sessionfence/canonical.py")),
    ("sessionfence models.py (to_wire, hash, builders)", lambda f, n: f.endswith("sessionfence/models.py")),
    ("sessionfence codec.py (encode, decode)", lambda f, n: f.endswith("sessionfence/codec.py")),
    ("sessionfence scripts/sync/keys", lambda f, n: "/sessionfence/" in f),
    ("benchmark harness (turn builder, loop)", lambda f, n: "/benchmarks/" in f),
]


def _categorize(stats: pstats.Stats) -> list[tuple[str, float]]:
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        label = next((lbl for lbl, match in _CATEGORIES if match(filename, name)), "other Python/builtins")
        totals[label] = totals.get(label, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


def _cumulative(stats: pstats.Stats, suffix: str, func: str) -> float:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return float(sum(v[3] for (f, _l, n), v in raw.items() if f.endswith(suffix) and n == func))


def profile_commits(bench: Bench, out_dir: str) -> dict[str, Any]:
    """cProfile of ``profile_ops`` sync turns, each built (models + stamp hash) and committed."""
    n, w = bench.plan.profile_ops, bench.plan.warmup
    store, fence = bench.sync_store(bench.sync_client, "profile")
    texts = [bench.turns.texts() for _ in range(w + n)]
    turns = bench.turns
    for turn in range(w):
        store.commit_runtime_state(turns.commit(turn, texts[turn], fence))
    profiler = cProfile.Profile()
    gc.collect()
    start = time.perf_counter()
    profiler.enable()
    for turn in range(w, w + n):
        store.commit_runtime_state(turns.commit(turn, texts[turn], fence))
    profiler.disable()
    wall = time.perf_counter() - start
    bench.cleanup()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    categories = _categorize(stats)
    anchors = {
        "build models (user side: SessionNodeRecord, RuntimeCommit, copies)": _cumulative(
            stats, "benchmarks/commit_floor.py", "commit"
        ) - _cumulative(stats, "sessionfence/models.py", "turn_commit_hash"),
        "RuntimeCommit.turn_commit_hash": _cumulative(stats, "sessionfence/models.py", "turn_commit_hash"),
        "commit_runtime_state (all)": _cumulative(stats, "sessionfence/sync.py", "commit_runtime_state"),
        "  validation.check_commit": _cumulative(stats, "sessionfence/validation.py", "check_commit"),
        "  Codec.commit (incl. validation)": _cumulative(stats, "sessionfence/codec.py", "commit"),
        "  scripts.run_sync (redis-py + round trip)": _cumulative(stats, "sessionfence/scripts.py", "run_sync"),
        "  decode reply": _cumulative(stats, "sessionfence/codec.py", "decode"),
    }
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    text_cum = io.StringIO()
    pstats.Stats(profiler, stream=text_cum).sort_stats("cumulative").print_stats(40)
    profile_path = f"{out_dir}/{NAME}-profile.txt"
    try:
        with open(profile_path, "w", encoding="utf-8") as f:
            f.write(f"cProfile of {n} sync turns (build + stamp hash + commit_runtime_state)\n\n")
            f.write(text.getvalue())
            f.write(text_cum.getvalue())
    except OSError:
        profile_path = ""
    return {
        "turns": n,
        "wall_s_with_profiler": wall,
        "profiled_tottime_s": total,
        "categories_us_per_turn": {k: v * 1e6 / n for k, v in categories},
        "anchors_us_per_turn": {k: v * 1e6 / n for k, v in anchors.items()},
        "text_file": profile_path,
    }


def stage_breakdown(bench: Bench) -> dict[str, float]:
    """Profiler-free µs per turn of each client stage of a sync commit (median of 3 passes)."""
    n, w = bench.plan.stage_ops, bench.plan.warmup
    turns = bench.turns
    texts = [turns.texts() for _ in range(w + n)]
    clock = time.perf_counter_ns
    passes: dict[str, list[float]] = {}

    def record(name: str, elapsed_ns: int) -> None:
        passes.setdefault(name, []).append(elapsed_ns / 1e3 / n)

    for _ in range(3):
        store, fence = bench.sync_store(bench.sync_client, "stages")
        codec, client = store._codec, bench.sync_client
        for commit in bench.fenced(fence, w):
            store.commit_runtime_state(commit)
        gc.collect()
        t0 = clock()
        built = [turns.commit(t, texts[t], fence, stamp=False) for t in range(w, w + n)]
        t1 = clock()
        hashes = [c.turn_commit_hash() for c in built]
        t2 = clock()
        stamped = [
            c.with_turn_commit(RuntimeTurnCommitStamp(SID, f"turn-{t:08d}", h))
            for t, c, h in zip(range(w, w + n), built, hashes, strict=True)
        ]
        t3 = clock()
        for c in stamped:
            check_commit(c)
        t4 = clock()
        calls = [codec.commit(c) for c in stamped]
        t5 = clock()
        replies = [run_sync(client, call.script, call.keys, call.args) for call in calls]
        t6 = clock()
        for call, reply in zip(calls, replies, strict=True):
            call.decode(reply)
        t7 = clock()
        conn: Any = client.connection_pool.get_connection()
        try:
            packed_sf = [conn.pack_command("EVALSHA", "x" * 40, len(c.keys), *c.keys, *c.args) for c in calls]
            t8 = clock()
            floor_all = bench.floor_calls("stages-floor", w + n)[1]
            floor = floor_all[w:]
            t9 = clock()
            packed_floor = [conn.pack_command("EVALSHA", *a) for a in floor]
            t10 = clock()
        finally:
            client.connection_pool.release(conn)
        for a in floor_all[:w]:
            client.evalsha(*a)
        t11 = clock()
        for a in floor:
            client.evalsha(*a)
        t12 = clock()
        record("build models (10 nodes + RuntimeCommit)", t1 - t0)
        record("turn_commit_hash", t2 - t1)
        record("with_turn_commit (model_copy)", t3 - t2)
        record("validation.check_commit", t4 - t3)
        record("Codec.commit (incl. validation)", t5 - t4)
        record("EVALSHA round trip via run_sync (pack, send, server, parse)", t6 - t5)
        record("decode reply", t7 - t6)
        record("  part of it: redis-py pack_command of the sessionfence args", t8 - t7)
        record("floor, same pass: EVALSHA round trip (pack, send, server, parse)", t12 - t11)
        record("  part of it: redis-py pack_command of the floor args", t10 - t9)
        del packed_sf, packed_floor
        bench.cleanup()
    return {name: statistics.median(values) for name, values in passes.items()}


# ---- report ------------------------------------------------------------------------------------------------


def report(bench: Bench, summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = []
    ratios: dict[str, dict[str, float]] = {}
    for case, (label, mode, floor_case) in CASES.items():
        s = summaries[case]
        rate = s["ops_per_s"]
        ratio_text = "-"
        if floor_case is not None:
            floor_rates = summaries[floor_case]["ops_per_s"]
            paired = [a / b for a, b in zip(rate["all"], floor_rates["all"], strict=True)]
            ratio = rate["median"] / floor_rates["median"]
            ratios[case] = {"median_over_median": ratio, "paired_min": min(paired), "paired_max": max(paired)}
            ratio_text = f"{ratio:.2f} ({min(paired):.2f}-{max(paired):.2f})"
        server = s.get("server_per_op", {})
        rows.append([
            label,
            mode,
            f"{fmt_rate(rate['min'])} / [bold]{fmt_rate(rate['median'])}[/bold] / {fmt_rate(rate['max'])}",
            fmt_us(s["latency_us"]["p50"]),
            fmt_us(s["latency_us"]["p99"]),
            ratio_text,
            f"{server.get('commands', float('nan')):.1f}",
            f"{server.get('read_events', float('nan')):.2f}",
            f"{server.get('cpu_us', float('nan')):.0f} µs",
            f"{s.get('client_cpu_us_per_op', float('nan')):.0f} µs",
        ])
    plan = bench.plan
    print_table(
        f"Turn commit: sessionfence vs raw EVALSHA floor ({plan.runs} interleaved runs)",
        [
            "case", "mode", "ops/s min / median / max", "p50", "p99", "ratio sf/floor", "cmds/op", "reads/op",
            "srv CPU/op", "client CPU/op",
        ],
        rows,
        caption=(
            "ratio = median/median (range of run-by-run paired ratios). cmds/op counts commands run inside Lua "
            "plus the EVALSHA; reads/op ~ client round trips; srv CPU = used_cpu_sys+user per op; client CPU = this "
            "benchmark process's CPU time per op (near 1e6/ops means the client is the bottleneck)."
        ),
    )
    head_case, floor_case = HEADLINE
    report_command_mix(summaries[head_case], summaries[floor_case])
    headline = ratios[head_case]["median_over_median"]
    peer = summaries[head_case]["ops_per_s"]["median"] / summaries["peer_floor_sync"]["ops_per_s"]["median"]
    ratios["sf_sync_vs_peer_floor"] = {"median_over_median": peer}
    console.print(
        f"Calibration: sync sessionfence / peer-baselines-shaped floor = {peer:.2f} "
        f"(that floor: {fmt_rate(summaries['peer_floor_sync']['ops_per_s']['median'])}/s here, 5,290/s in "
        "peer-baselines.md; it skips per-node XADD, blobs, turn record and 3 of 4 ledger fields)."
    )
    verdict = "[green]meets[/green]" if headline >= TARGET_RATIO else "[red]misses[/red]"
    console.print(
        f"Headline: sync sequential sessionfence / floor = [bold]{headline:.2f}[/bold] "
        f"({fmt_rate(summaries[head_case]['ops_per_s']['median'])} vs "
        f"{fmt_rate(summaries[floor_case]['ops_per_s']['median'])} commits/s); {verdict} the >= {TARGET_RATIO} target."
    )
    return {"ratios": ratios, "headline_ratio": headline, "target_ratio": TARGET_RATIO}


def report_command_mix(sf: dict[str, Any], floor: dict[str, Any]) -> None:
    """Server-side commands per op of the headline pair, with commandstats time (µs per op)."""
    a = sf.get("server_per_op", {}).get("by_command", {})
    b = floor.get("server_per_op", {}).get("by_command", {})
    if not a:
        return
    rows = []
    for name in sorted(set(a) | set(b), key=lambda c: -a.get(c, b.get(c, {})).get("calls", 0)):
        x, y = a.get(name, {}), b.get(name, {})
        rows.append([
            name,
            f"{x.get('calls', 0):.1f}", f"{x.get('usec', 0):.1f}",
            f"{y.get('calls', 0):.1f}", f"{y.get('usec', 0):.1f}",
        ])
    lua_sf = a.get("evalsha", {}).get("usec", 0) - sum(v["usec"] for k, v in a.items() if k != "evalsha")
    lua_floor = b.get("evalsha", {}).get("usec", 0) - sum(v["usec"] for k, v in b.items() if k != "evalsha")
    rows.append(["(evalsha minus its commands: Lua, args, replies)", "", f"{lua_sf:.1f}", "", f"{lua_floor:.1f}"])
    print_table(
        "Server work per op, sync sequential (INFO commandstats diff)",
        ["command", "sf calls", "sf µs", "floor calls", "floor µs"],
        rows,
        caption="evalsha µs includes the commands it runs; commandstats time excludes event-loop and I/O time.",
    )


def report_client_time(stages: dict[str, float], profile: dict[str, Any], sf_sync_median: float) -> None:
    rows = [[name, f"{us:.1f}"] for name, us in stages.items()]
    print_table(
        "Client stages of one sync turn, no profiler (µs per turn, median of 3 passes)",
        ["stage", "µs/turn"],
        rows,
        caption=f"timed sf sync commit (pre-built) = {1e6 / sf_sync_median:.0f} µs/op at the median rate",
    )
    total = sum(profile["categories_us_per_turn"].values())
    rows = [
        [name, f"{us:.1f}", f"{100 * us / total:.0f} %"] for name, us in profile["categories_us_per_turn"].items()
    ]
    print_table(
        f"cProfile of {profile['turns']} sync turns (build + hash + commit): self time by component",
        ["component", "µs/turn", "share"],
        rows,
        caption="cProfile inflates Python-call-heavy code relative to C; read shares, not absolute times.",
    )
    rows = [[name, f"{us:.1f}"] for name, us in profile["anchors_us_per_turn"].items()]
    print_table("cProfile: cumulative time of key calls (µs per turn)", ["call", "µs/turn"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--no-profile", action="store_true", help="skip the client profile")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs is not None:
        plan = Plan(**{**asdict(plan), "runs": max(1, args.runs)})
    started = time.perf_counter()
    with redis_server(args.redis_url) as server:
        bench = Bench(server, plan)
        try:
            machine = machine_info(bench.admin, server)
            console.print(
                f"[dim]Redis {machine['server']['redis_version']} at {server.url if server.embedded else '(given)'}"
                f"; redis-py {machine['redis_py']}; {machine['cpu_count']} CPUs; built {bench.pool_size} turns "
                f"in {bench.pool_build_s:.1f} s; node JSON {NODE_JSON_BYTES} B[/dim]"
            )
            problems = verify_same_bytes(bench)
            if problems:
                console.print(f"[red]floor does not store the same bytes: {problems}[/red]")
            with asyncio.Runner() as runner:
                run_cases(bench, runner)
            summaries = {case: summarize(bench.samples[case]) for case in CASES}
            ratios = report(bench, summaries)
            stages: dict[str, float] = {}
            profile: dict[str, Any] = {}
            if not args.no_profile:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                stages = stage_breakdown(bench)
                profile = profile_commits(bench, args.out)
                report_client_time(stages, profile, summaries["sf_sync"]["ops_per_s"]["median"])
        finally:
            bench.close()
    elapsed = time.perf_counter() - started
    payload = {
        "benchmark": NAME,
        "quick": args.quick,
        "plan": asdict(plan),
        "elapsed_s": elapsed,
        "machine": machine,
        "workload": {
            "nodes_per_turn": NODES_PER_TURN,
            "node_json_bytes": NODE_JSON_BYTES,
            "concurrency": CONCURRENCY,
            "floor_same_bytes_problems": problems,
            "floor_lua": FLOOR_LUA,
        },
        "cases": {
            case: {"label": CASES[case][0], "mode": CASES[case][1], **summaries[case]} for case in CASES
        },
        **ratios,
        "client_stages_us_per_turn": stages,
        "profile": profile,
    }
    for case in payload["cases"].values():  # keep the file readable: per-run rates stay, latencies do not
        case.pop("latencies_ns", None)
    path = write_results(NAME, args.out, payload)
    console.print(f"[dim]results: {path} ({elapsed:.0f} s)[/dim]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
