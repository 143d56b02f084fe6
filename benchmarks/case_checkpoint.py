"""Case 4, checkpoint store: save a turn and load the latest state, vs LangGraph's Postgres checkpointer.

One turn = 10 new messages of ~300 bytes (random, incompressible text; sessionfence stores each as a node whose
JSON is ~300 B, LangGraph gets the same dicts) plus a checkpoint. Every system writes into its own fresh thread
per run, the saves of all systems interleaved chunk by chunk; then the loads, interleaved the same way.

* sessionfence ``save``: build the turn's models, stamp, and ``commit_runtime_state`` (fenced, CAS, 10 nodes,
  tool state, usage): one atomic EVALSHA. Memory-only Redis (no RDB, no AOF) unless ``--redis-url`` says else.
  ``load``: ``load_session(ActivePath())``: head, the whole active path (every message of the thread so far),
  hydrated checkpoint and ledger, in one EVALSHA.
* LangGraph ``PostgresSaver`` (sync, psycopg 3, the local PostgreSQL, its own schema dropped afterwards):
  ``save`` = ``put_writes`` of the node's write (the 10 messages) + ``put`` of the new checkpoint.
  - "delta" threads (peer-baselines.md's main rows): the ``messages`` channel holds only the turn's 10 messages,
    so a load returns 10 messages. Durable (``synchronous_commit=on``, the default) and ``off`` (WAL not flushed
    before the ack: the like-for-like with an unpersisted Redis).
  - "whole history" thread: the channel holds every message so far (what the default ``add_messages``
    reducer stores), so a load returns the same messages as sessionfence's ActivePath.
  ``load`` = ``get_tuple`` of the thread's latest checkpoint (after ANALYZE).

Target: sessionfence >= 3x LangGraph Postgres.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import redis

from sessionfence import ActivePath, RedisStore

from .commit_floor import SID, TIMESTAMP, Turns, node_id
from .common import Sample, console, timed_interleaved_sync
from .suite import CaseResult, Ctx, Ratio, Skip, Stopwatch, row_from_samples

CASE = "checkpoint"
TITLE = "4. Checkpoint store: save a turn + load the latest state vs LangGraph PostgresSaver"
OWNER = "bench-checkpoint"
LEASE_TTL_MS = 3_600_000


def _messages(turn: int, texts: list[str]) -> list[dict[str, Any]]:
    """The turn's 10 messages as plain dicts: the same fields and text as sessionfence's node JSON."""
    out = []
    for j, text in enumerate(texts):
        parent = node_id(turn, j - 1) if j else (node_id(turn - 1, 9) if turn else None)
        out.append({
            "node_id": node_id(turn, j), "parent_node_id": parent, "timestamp": TIMESTAMP, "kind": "message",
            "message": {"role": "assistant" if j % 2 else "user", "parts": [{"kind": "text", "content": text}]},
        })
    return out


class LangGraphThread:
    """One LangGraph thread written the way a graph step writes it: the node's writes, then the checkpoint."""

    def __init__(self, saver: Any, full_history: bool) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        self.saver = saver
        self.full_history = full_history
        self.thread_id = f"bench-{uuid.uuid4().hex}"
        self.history: list[dict[str, Any]] = []
        self.version: str | None = None
        self.step = 0
        self._empty = empty_checkpoint
        # The thread's first (input) checkpoint, so the first turn's writes have a checkpoint to hang on.
        self.config = saver.put(
            {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}},
            empty_checkpoint(), {"source": "input", "step": -1, "parents": {}}, {},
        )
        self.latest = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}}

    def save(self, turn: int, texts: list[str]) -> None:
        messages = _messages(turn, texts)
        self.saver.put_writes(self.config, [("messages", messages)], task_id=str(uuid.uuid4()))
        if self.full_history:
            self.history = [*self.history, *messages]
        value = self.history if self.full_history else messages
        version = self.saver.get_next_version(self.version, None)
        checkpoint = self._empty()
        checkpoint["channel_values"] = {"messages": value}
        checkpoint["channel_versions"] = {"messages": version}
        checkpoint["versions_seen"] = {"agent": {"messages": self.version}} if self.version else {}
        checkpoint["updated_channels"] = ["messages"]
        self.step += 1
        self.config = self.saver.put(
            self.config, checkpoint, {"source": "loop", "step": self.step, "parents": {}}, {"messages": version}
        )
        self.version = version

    def load(self) -> int:
        found = self.saver.get_tuple(self.latest)
        assert found is not None
        return len(found.checkpoint["channel_values"]["messages"])


class PostgresPeer:
    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self.url = url
        self.schema = f"sfbench_{secrets.token_hex(4)}"
        self._psycopg = psycopg
        self._dict_row = dict_row
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
        self.server_version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        self.settings = {
            name: str(admin.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("synchronous_commit", "fsync", "wal_level", "shared_buffers")
        }
        admin.execute(f"CREATE SCHEMA {self.schema}")
        self.admin = admin
        self.conns: list[Any] = []

    def saver(self, synchronous_commit: str) -> Any:
        from langgraph.checkpoint.postgres import PostgresSaver

        conn = self._psycopg.connect(
            self.url, autocommit=True, prepare_threshold=0, row_factory=self._dict_row,
            options=f"-c search_path={self.schema} -c synchronous_commit={synchronous_commit}",
        )
        self.conns.append(conn)
        saver = PostgresSaver(conn)
        saver.setup()
        return saver

    def analyze(self) -> None:
        self.admin.execute(f"SET search_path = {self.schema}")
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            self.admin.execute(f"ANALYZE {table}")

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.admin.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        self.admin.close()


ROWS = {
    "sf_save": ("sessionfence", "save turn: build + commit_runtime_state", "sync, memory-only Redis"),
    "lg_save": ("LangGraph PostgresSaver", "save turn: put_writes + put (delta channel)", "sync, durable"),
    "lg_save_off": ("LangGraph PostgresSaver", "save turn (delta channel)", "sync, synchronous_commit=off"),
    "lg_full_save": ("LangGraph PostgresSaver", "save turn (whole history in the channel)", "sync, durable"),
    "sf_load": ("sessionfence", "load_session(ActivePath): whole path + checkpoint", "sync"),
    "lg_load": ("LangGraph PostgresSaver", "get_tuple latest (delta: 10 messages)", "sync"),
    "lg_full_load": ("LangGraph PostgresSaver", "get_tuple latest (whole history)", "sync"),
}


HEADLINES = (
    "save turn: sessionfence / LangGraph Postgres (durable, delta)",
    "save turn: sessionfence / LangGraph Postgres (synchronous_commit=off, delta)",
    "load latest: sessionfence ActivePath / LangGraph get_tuple (whole history)",
    "load latest: sessionfence ActivePath / LangGraph get_tuple (delta, 10 messages)",
)


def _skip(result: CaseResult, reason: str, elapsed: float) -> CaseResult:
    """The peer cannot run: say why, and list the case's ratios as skipped (never silently absent)."""
    reason = " ".join(reason.split())
    result.skipped.append(Skip("LangGraph PostgresSaver", reason))
    result.ratios += [Ratio(name, "sf", "lg", None, 3.0, note=f"not measured: {reason}") for name in HEADLINES]
    result.elapsed_s = elapsed
    return result


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    result = CaseResult(CASE, TITLE)
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        return _skip(result, f"not installed ({exc}); pip install -e '.[bench]'", watch.elapsed)
    try:
        pg = PostgresPeer(ctx.postgres_url)
    except Exception as exc:
        return _skip(result, f"PostgreSQL at {ctx.postgres_url} unreachable: {exc}", watch.elapsed)
    runs = ctx.runs_or(ctx.pick(1, 3))
    turns_n, warm = ctx.pick(30, 100), ctx.pick(3, 10)
    loads, warm_loads = ctx.pick(60, 200), ctx.pick(5, 20)
    chunks = ctx.pick(5, 10)
    samples: dict[str, list[Sample]] = {}
    client = redis.Redis.from_url(ctx.url)
    prefix = ctx.prefix("sfckpt")
    turns = Turns(seed=4)
    texts = [turns.texts() for _ in range(warm + turns_n)]
    checked: dict[str, int] = {}
    try:
        durable, relaxed = pg.saver("on"), pg.saver("off")
        for run_index in range(runs):
            store = RedisStore(client, f"ckpt-{run_index}", key_prefix=prefix)
            lease = store.try_claim_session_execution_lease(SID, OWNER, LEASE_TTL_MS)
            assert lease is not None
            fence = lease.fence()
            lg, lg_off, lg_full = (LangGraphThread(durable, False), LangGraphThread(relaxed, False),
                                   LangGraphThread(durable, True))

            def sf_save(turn: int, store: RedisStore = store, fence: Any = fence) -> None:
                store.commit_runtime_state(turns.commit(turn, texts[turn], fence))

            saves = {
                "sf_save": (sf_save, range(warm, warm + turns_n), range(warm)),
                "lg_save": (lambda t, th=lg: th.save(t, texts[t]), range(warm, warm + turns_n), range(warm)),
                "lg_save_off": (lambda t, th=lg_off: th.save(t, texts[t]), range(warm, warm + turns_n), range(warm)),
                "lg_full_save": (lambda t, th=lg_full: th.save(t, texts[t]), range(warm, warm + turns_n),
                                 range(warm)),
            }
            out = timed_interleaved_sync(ctx.probe, saves, chunks)
            pg.analyze()
            read = store.load_session(ActivePath())
            assert read is not None
            checked = {"sf_nodes": len(read.graph.nodes), "lg_messages": lg.load(), "lg_full_messages": lg_full.load()}
            loaders = {
                "sf_load": (lambda _i, s=store: s.load_session(ActivePath()), range(loads), range(warm_loads)),
                "lg_load": (lambda _i, th=lg: th.load(), range(loads), range(warm_loads)),
                "lg_full_load": (lambda _i, th=lg_full: th.load(), range(loads), range(warm_loads)),
            }
            out |= timed_interleaved_sync(ctx.probe, loaders, chunks)
            for key, sample in out.items():
                samples.setdefault(key, []).append(sample)
            console.print(
                f"[dim]checkpoint run {run_index + 1}/{runs}: "
                + ", ".join(f"{k}={v.rate:,.0f}/s" for k, v in out.items()) + f"; loaded {checked}[/dim]"
            )
    finally:
        client.close()
        pg.close()
    aof = int(ctx.admin.info("persistence").get("aof_enabled", 0))
    for key, (system, operation, mode) in ROWS.items():
        if key == "sf_save":
            mode = "sync, Redis with AOF" if aof else "sync, memory-only Redis (no AOF)"
        result.rows.append(row_from_samples(key, system, operation, mode, samples[key],
                                            server=key.startswith("sf_")))
    r = result.ratio
    r("save turn: sessionfence / LangGraph Postgres (durable, delta)", "sf_save", "lg_save", 3.0,
      note="peer-baselines' main row; Postgres flushes WAL per commit"
      + ("" if aof else ", this Redis persists nothing"))
    r("save turn: sessionfence / LangGraph Postgres (synchronous_commit=off, delta)", "sf_save", "lg_save_off", 3.0,
      note="like-for-like on durability")
    r("load latest: sessionfence ActivePath / LangGraph get_tuple (whole history)", "sf_load", "lg_full_load", 3.0,
      note="same messages returned")
    r("load latest: sessionfence ActivePath / LangGraph get_tuple (delta, 10 messages)", "sf_load", "lg_load", 3.0,
      note=f"sessionfence returns the whole path ({checked.get('sf_nodes')} nodes), LangGraph 10 messages")
    r("save turn: sessionfence / LangGraph Postgres (whole history)", "sf_save", "lg_full_save", 3.0,
      headline=False, note="the default add_messages channel rewrites the history every turn")
    result.extra = {
        "runs": runs, "turns_per_thread": warm + turns_n, "timed_saves": turns_n, "loads": loads,
        "postgres_version": pg.server_version, "postgres_settings": pg.settings, "loaded": checked,
    }
    result.elapsed_s = watch.elapsed
    return result
