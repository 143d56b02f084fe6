"""Shared benchmark machinery: the server, timing loops, server-side counters, tables and results JSON.

* `redis_server(url)`: the given Redis, else a private `EmbeddedRedis` (no RDB, no AOF, loopback), stopped on exit.
* `ServerProbe`: ``INFO commandstats cpu stats`` snapshots diffed around a timed loop, so every row can report
  commands per op (including those run inside Lua), socket read events per op (about one per client round trip;
  requests that arrive together count once) and server CPU per op. These numbers do not depend on the client.
* `timed_sync` / `timed_async` / `timed_concurrent`: warm-up, then a timed loop recording every call's latency.
* `timed_interleaved_sync` / `timed_interleaved_async`: several cases timed chunk by chunk, interleaved, so they
  share the same background load (use these for anything reported as a ratio).
* `summarize`: min / median / max ops/s over independent runs; p50 / p99 over every call of every run.
* `print_table`, `machine_info`, `write_results` (``<out>/<name>-<UTC timestamp>.json``).

Run-to-run spread on a small VM is +-20-30 %, so benchmarks interleave their cases run by run and report
ratios to a floor measured in the same window; absolute numbers are for context only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import redis
from rich.console import Console
from rich.table import Table

from sessionfence.embedded import EmbeddedRedis

__all__ = [
    "Lane",
    "Sample",
    "ServerDelta",
    "ServerHandle",
    "ServerProbe",
    "base_parser",
    "console",
    "delete_prefix",
    "fmt_rate",
    "fmt_us",
    "machine_info",
    "percentile",
    "print_table",
    "redis_server",
    "summarize",
    "timed_async",
    "timed_concurrent",
    "timed_interleaved_async",
    "timed_interleaved_sync",
    "timed_sync",
    "write_results",
]

T = TypeVar("T")
# Piped output (CI logs, `| tee`) would otherwise wrap the tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 180)
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---- command line ------------------------------------------------------------------------------------------


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--redis-url",
        default=None,
        help="benchmark this Redis (standalone; keys under a unique prefix, deleted afterwards) "
        "instead of a private embedded redis-server",
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (a smoke run, < 30 s)")
    parser.add_argument("--out", default="bench-results", help="directory for the results JSON")
    parser.add_argument("--runs", type=int, default=None, help="independent runs per case (overrides the plan)")
    return parser


# ---- server ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerHandle:
    url: str
    embedded: bool
    binary: str | None


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[ServerHandle]:
    """``url`` as given, else a private embedded server (``--save '' --appendonly no``), stopped by pid."""
    if url:
        yield ServerHandle(url=url, embedded=False, binary=None)
        return
    with EmbeddedRedis() as server:
        yield ServerHandle(url=server.url, embedded=True, binary=server.binary)


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix:`` (SCAN + DEL), outside any timed window."""
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.delete(*batch))
            batch.clear()
    if batch:
        deleted += int(client.delete(*batch))
    return deleted


# ---- server-side counters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    calls: dict[str, int]
    usec: dict[str, int]
    cpu_s: float
    reads: int


@dataclass
class ServerDelta:
    """What the server did during one timed loop (the probe's own INFO excluded)."""

    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)  # commandstats time; EVALSHA's includes its commands
    cpu_s: float = 0.0
    reads: int = 0

    def add(self, other: ServerDelta) -> None:
        for name, n in other.calls.items():
            self.calls[name] = self.calls.get(name, 0) + n
        for name, n in other.usec.items():
            self.usec[name] = self.usec.get(name, 0) + n
        self.cpu_s += other.cpu_s
        self.reads += other.reads

    @property
    def commands(self) -> int:
        return sum(self.calls.values())


class ServerProbe:
    """Snapshots ``INFO commandstats cpu stats`` with one call on its own connection."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def snapshot(self) -> _Snapshot:
        info: dict[str, Any] = self.client.info("commandstats", "cpu", "stats")
        stats = {
            name.removeprefix("cmdstat_"): stat
            for name, stat in info.items()
            if name.startswith("cmdstat_") and isinstance(stat, dict)
        }
        cpu = float(info.get("used_cpu_sys", 0.0)) + float(info.get("used_cpu_user", 0.0))
        return _Snapshot(
            calls={name: int(stat.get("calls", 0)) for name, stat in stats.items()},
            usec={name: int(stat.get("usec", 0)) for name, stat in stats.items()},
            cpu_s=cpu,
            reads=int(info.get("total_reads_processed", 0)),
        )

    @staticmethod
    def delta(before: _Snapshot, after: _Snapshot) -> ServerDelta:
        calls, usec = {}, {}
        for name, n in after.calls.items():
            if name == "info":
                continue
            diff = n - before.calls.get(name, 0)
            if diff:
                calls[name] = diff
                usec[name] = after.usec.get(name, 0) - before.usec.get(name, 0)
        # The 'after' INFO was read by the server before it answered: one read event is the probe's own.
        reads = max(after.reads - before.reads - 1, 0)
        return ServerDelta(calls=calls, usec=usec, cpu_s=after.cpu_s - before.cpu_s, reads=reads)


# ---- timing loops ------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed loop: ``ops`` calls in ``seconds`` of wall time, every call's latency, the server's work."""

    ops: int
    seconds: float
    latencies_ns: list[int]
    server: ServerDelta | None
    client_cpu_s: float | None = None  # this process's CPU time (time.process_time) over the timed window
    lane_ops: list[int] = field(default_factory=list)  # timed calls per lane (interleaved loops)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


def _loop_sync(op: Callable[[T], object], items: Sequence[T]) -> tuple[float, list[int]]:
    clock = time.perf_counter_ns
    latencies = [0] * len(items)
    start = clock()
    for index, item in enumerate(items):
        t0 = clock()
        op(item)
        latencies[index] = clock() - t0
    return (clock() - start) / 1e9, latencies


async def _loop_async(op: Callable[[T], Awaitable[object]], items: Sequence[T]) -> list[int]:
    clock = time.perf_counter_ns
    latencies = [0] * len(items)
    for index, item in enumerate(items):
        t0 = clock()
        await op(item)
        latencies[index] = clock() - t0
    return latencies


def timed_sync(
    probe: ServerProbe | None, op: Callable[[T], object], items: Sequence[T], warmup: Sequence[T] = ()
) -> Sample:
    """Warm up with ``warmup``, then time ``op`` over ``items`` on this thread."""
    for item in warmup:
        op(item)
    gc.collect()
    before = probe.snapshot() if probe else None
    seconds, latencies = _loop_sync(op, items)
    after = probe.snapshot() if probe else None
    server = ServerProbe.delta(before, after) if before and after else None
    return Sample(ops=len(items), seconds=seconds, latencies_ns=latencies, server=server)


async def timed_async(
    probe: ServerProbe | None,
    op: Callable[[T], Awaitable[object]],
    items: Sequence[T],
    warmup: Sequence[T] = (),
) -> Sample:
    """The asyncio twin of `timed_sync`: one coroutine awaiting each call in turn."""
    return await timed_concurrent(probe, [(op, items, warmup)])


async def timed_concurrent(
    probe: ServerProbe | None,
    lanes: Sequence[tuple[Callable[[Any], Awaitable[object]], Sequence[Any], Sequence[Any]]],
) -> Sample:
    """Each lane ``(op, items, warmup)`` is one asyncio client awaiting its calls in turn; all lanes run at
    once on this event loop. Warm-ups run concurrently too; the timed window is the wall time of all lanes."""
    await asyncio.gather(*(_loop_async(op, warm) for op, _items, warm in lanes))
    gc.collect()
    before = probe.snapshot() if probe else None  # brief blocking call, outside the timed window
    start = time.perf_counter_ns()
    per_lane = await asyncio.gather(*(_loop_async(op, items) for op, items, _warm in lanes))
    seconds = (time.perf_counter_ns() - start) / 1e9
    after = probe.snapshot() if probe else None
    server = ServerProbe.delta(before, after) if before and after else None
    latencies = [lat for lane in per_lane for lat in lane]
    return Sample(ops=len(latencies), seconds=seconds, latencies_ns=latencies, server=server)


# ---- interleaved timing -------------------------------------------------------------------------------------
#
# On a shared or small VM the load changes from one second to the next, so two cases timed one after the other
# can differ by 30 % for reasons of their own. The interleaved loops below cut every case's items into the same
# number of chunks and run chunk 1 of every case, then chunk 2 of every case, and so on (rotating the order), so
# every case sees the same background load and their ratio stays meaningful. One INFO snapshot at each chunk
# boundary attributes the server's work to the chunk in between; snapshots are outside the timed windows.

Lane = tuple[Callable[[Any], Any], Sequence[Any], Sequence[Any]]  # (op, items, warm-up items)


def _chunks(items: Sequence[Any], count: int) -> list[Sequence[Any]]:
    size, extra = divmod(len(items), count)
    out, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        out.append(items[start:end])
        start = end
    return out


class _Accumulator:
    def __init__(self, lanes: int) -> None:
        self.lane_ops = [0] * lanes
        self.ops = 0
        self.ns = 0
        self.latencies: list[int] = []
        self.server = ServerDelta()
        self.measured = False
        self.cpu_s = 0.0

    def sample(self) -> Sample:
        server = self.server if self.measured else None
        return Sample(self.ops, self.ns / 1e9, self.latencies, server, self.cpu_s, self.lane_ops)


def _over_budget(started_ns: int, budget_s: float | None, rounds_done: int, min_rounds: int) -> bool:
    """Whether to stop after this round: the wall-time budget is spent and enough rounds were timed."""
    return budget_s is not None and rounds_done >= min_rounds and time.perf_counter_ns() - started_ns > budget_s * 1e9


def timed_interleaved_sync(
    probe: ServerProbe | None,
    cases: dict[str, Lane],
    chunks: int = 20,
    budget_s: float | None = None,
    min_rounds: int = 2,
) -> dict[str, Sample]:
    """Warm every case up, then time them chunk by chunk, interleaved (see above).

    With ``budget_s``, rounds stop once that much wall time has passed (after at least ``min_rounds``), so a
    loaded machine shortens the run instead of stretching it; every case still gets the same rounds, and
    `Sample.lane_ops` says how many items were timed."""
    for op, _items, warmup in cases.values():
        for item in warmup:
            op(item)
    names = list(cases)
    split = {name: _chunks(cases[name][1], chunks) for name in names}
    acc = {name: _Accumulator(1) for name in names}
    gc.collect()
    last = probe.snapshot() if probe else None
    started = time.perf_counter_ns()
    for index in range(chunks):
        for k in range(len(names)):
            name = names[(index + k) % len(names)]
            cpu = time.process_time()
            seconds, latencies = _loop_sync(cases[name][0], split[name][index])
            a = acc[name]
            a.cpu_s += time.process_time() - cpu
            a.ops += len(latencies)
            a.lane_ops[0] += len(latencies)
            a.ns += int(seconds * 1e9)
            a.latencies += latencies
            if probe and last:
                now = probe.snapshot()
                a.server.add(ServerProbe.delta(last, now))
                a.measured = True
                last = now
        if _over_budget(started, budget_s, index + 1, min_rounds):
            break
    return {name: acc[name].sample() for name in names}


async def timed_interleaved_async(
    probe: ServerProbe | None,
    cases: dict[str, Sequence[Lane]],
    chunks: int = 20,
    budget_s: float | None = None,
    min_rounds: int = 2,
) -> dict[str, Sample]:
    """The asyncio version: a case is one or more lanes (each an asyncio client awaiting its calls in turn);
    a case's chunk runs all its lanes at once and lasts until the slowest lane finishes."""
    for lanes in cases.values():
        await asyncio.gather(*(_loop_async(op, warm) for op, _items, warm in lanes))
    names = list(cases)
    split = {name: [_chunks(items, chunks) for _op, items, _warm in cases[name]] for name in names}
    acc = {name: _Accumulator(len(cases[name])) for name in names}
    gc.collect()
    last = probe.snapshot() if probe else None
    clock = time.perf_counter_ns
    started = clock()
    for index in range(chunks):
        for k in range(len(names)):
            name = names[(index + k) % len(names)]
            lanes = cases[name]
            cpu = time.process_time()
            start = clock()
            per_lane = await asyncio.gather(
                *(_loop_async(lane[0], split[name][i][index]) for i, lane in enumerate(lanes))
            )
            elapsed = clock() - start
            a = acc[name]
            a.cpu_s += time.process_time() - cpu
            for lane, latencies in enumerate(per_lane):
                a.ops += len(latencies)
                a.lane_ops[lane] += len(latencies)
                a.latencies += latencies
            a.ns += elapsed
            if probe and last:
                now = probe.snapshot()  # a brief blocking call between chunks
                a.server.add(ServerProbe.delta(last, now))
                a.measured = True
                last = now
        if _over_budget(started, budget_s, index + 1, min_rounds):
            break
    return {name: acc[name].sample() for name in names}


# ---- statistics --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """ops/s over runs (min/median/max), latency over every call of every run, server work per op."""
    rates = [s.rate for s in samples]
    latencies = sorted(lat for s in samples for lat in s.latencies_ns)
    ops = sum(s.ops for s in samples)
    out: dict[str, Any] = {
        "runs": len(samples),
        "ops_per_run": [s.ops for s in samples],
        "ops_per_s": {"min": min(rates), "median": statistics.median(rates), "max": max(rates), "all": rates},
        "latency_us": {
            "p50": percentile(latencies, 0.50) / 1e3,
            "p99": percentile(latencies, 0.99) / 1e3,
            "max": latencies[-1] / 1e3 if latencies else float("nan"),
        },
    }
    cpus = [s.client_cpu_s for s in samples if s.client_cpu_s is not None]
    if cpus and ops:
        out["client_cpu_us_per_op"] = sum(cpus) * 1e6 / ops
    servers = [s.server for s in samples if s.server is not None]
    if servers and ops:
        total = ServerDelta()
        for delta in servers:
            total.add(delta)
        out["server_per_op"] = {
            "commands": total.commands / ops,
            "read_events": total.reads / ops,
            "cpu_us": total.cpu_s * 1e6 / ops,
            "by_command": {
                name: {"calls": n / ops, "usec": total.usec.get(name, 0) / ops}
                for name, n in sorted(total.calls.items(), key=lambda kv: -kv[1])
            },
        }
    return out


# ---- output ------------------------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_us(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value / 1e3:.2f} ms" if value >= 1000 else f"{value:.0f} µs"


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None
) -> None:
    table = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _read_first(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("-dirty" if dirty else "")


def machine_info(client: redis.Redis, server: ServerHandle) -> dict[str, Any]:
    """Client machine, library versions and the server's own report of itself."""
    info: dict[str, Any] = client.info("server")
    persistence: dict[str, Any] = client.info("persistence")
    memory: dict[str, Any] = client.info("memory")
    try:
        save = client.config_get("save").get("save")
        appendfsync = client.config_get("appendfsync").get("appendfsync")
    except redis.ResponseError:  # CONFIG may be renamed or disabled on a managed server
        save = appendfsync = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _read_first("/proc/cpuinfo", "model name"),
        "cpu_count": os.cpu_count(),
        "memory": _read_first("/proc/meminfo", "MemTotal"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "redis_py": redis.__version__,
        "hiredis": _version("hiredis"),
        "pydantic": _version("pydantic"),
        "orjson": _version("orjson"),
        "sessionfence": _version("sessionfence"),
        "git_revision": _git_revision(),
        "server": {
            "embedded": server.embedded,
            "binary": server.binary,
            "url": server.url if server.embedded else "(given with --redis-url)",
            "redis_version": info.get("redis_version"),
            "redis_mode": info.get("redis_mode"),
            "os": info.get("os"),
            "arch_bits": info.get("arch_bits"),
            "mem_allocator": memory.get("mem_allocator"),
            "aof_enabled": persistence.get("aof_enabled"),
            "appendfsync": appendfsync,
            "save": save,
        },
    }


def write_results(name: str, out_dir: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path
