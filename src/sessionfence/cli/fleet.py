"""`sessionfence fleet`: a fleet of worker processes under injected faults, then a full verification.

Phases: set up sessions under a fresh key prefix (``sffleet<hex>``) -> start workers -> produce work while the
fault injector kills, pauses (zombie writers) and disconnects workers -> drain (faults stop, paused workers
resume, every queue must empty) -> stop workers (SIGTERM) -> verify from Redis and the workers' logs -> print a
summary, write the JSON report, delete the run's keys (unless ``--keep``). Exit status 0 means every invariant
held; 1 means at least one violation (listed); 2 means the Redis cannot host the run; 130 means interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis.asyncio
import typer
from redis.exceptions import RedisError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..models import SessionRelation, SessionStoreCreateRequest
from ..store import AsyncRedisStoreFactory
from .connect import redis_target
from .fleet_faults import FAULT_KINDS, FaultInjector, WorkerPool
from .fleet_logs import WorkerLogs
from .fleet_producer import Producer
from .fleet_sim import LEDGER_MODEL, fleet_key
from .fleet_verify import Verification, verify_fleet

__all__ = [
    "FleetInterrupted",
    "FleetSettings",
    "FleetSetupError",
    "fleet",
    "parse_faults",
    "run_fleet",
    "verify_prefix",
]

console = Console()


RATE_PER_WORKER = 12.5


class FleetSetupError(Exception):
    """The target Redis cannot host a fleet run (unreachable, or a cluster node)."""


class FleetInterrupted(Exception):
    """The run was stopped by SIGINT/SIGTERM; workers were stopped and the run's keys removed."""


@dataclass
class FleetSettings:
    sessions: int = 16
    workers: int = 4
    turns: int = 600
    faults: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    lease_ttl_ms: int = 2000
    claim_ttl_ms: int = 2000
    fault_interval_s: float = 1.0
    max_batches: int = 8
    max_turn_sleep_ms: int = 30
    backlog: int = 0  # 0: 4 per session
    rate: float = (
        0.0  # max batches/s submitted; 0: uncapped (the command defaults to RATE_PER_WORKER x workers)
    )
    drain_timeout_s: float = 60.0
    keep: bool = False

    def effective_backlog(self) -> int:
        return self.backlog or 4 * self.sessions


def parse_faults(text: str) -> tuple[str, ...]:
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if parts in ([], ["none"]):
        return ()
    unknown = sorted(set(parts) - set(FAULT_KINDS))
    if unknown:
        raise typer.BadParameter(
            f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}"
        )
    return tuple(dict.fromkeys(parts))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# ----------------------------------------------------------------------------------------------------------
# The run


@dataclass
class _Timer:
    marks: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.marks[phase] = round(now - self._last, 3)
        self._last = now

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0


class FleetRun:
    def __init__(self, url: str, settings: FleetSettings, out: Console, *, embedded: bool) -> None:
        self.url = url
        self.s = settings
        self.out = out
        self.embedded = embedded
        self.prefix = f"sffleet{secrets.token_hex(4)}"
        self.sessions = [f"s{i:03d}" for i in range(settings.sessions)]
        self.rng = random.Random(settings.seed)
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.client: Any = redis.asyncio.Redis.from_url(url, client_name=f"{self.prefix}-control")
        self.factory = AsyncRedisStoreFactory(self.client, key_prefix=self.prefix)
        self.pool = WorkerPool(
            url,
            self.prefix,
            self.log_dir,
            settings.workers,
            lease_ttl_ms=settings.lease_ttl_ms,
            claim_ttl_ms=settings.claim_ttl_ms,
            max_batches=settings.max_batches,
            max_turn_sleep_ms=settings.max_turn_sleep_ms,
            seed=settings.seed,
        )
        self.producer = Producer(
            self.factory,
            self.sessions,
            settings.turns,
            random.Random(self.rng.random()),
            backlog=settings.effective_backlog(),
            rate=settings.rate,
        )
        self.injector = FaultInjector(
            self.pool,
            self.client,
            settings.faults,
            random.Random(self.rng.random()),
            interval_s=settings.fault_interval_s,
            log=lambda text: self.out.print(f"[yellow]{escape(text)}[/yellow]"),
        )
        self.logs = WorkerLogs(self.log_dir)
        self.timer = _Timer()
        self.phase = "starting"
        self.drained = False
        self.interrupted = False
        self.abort = asyncio.Event()
        self._main_task: asyncio.Task[Any] | None = None
        self.redis_version = "?"

    # -- live display --------------------------------------------------------------------------------------
    def render(self) -> Group:
        p, logs, inj = self.producer.stats, self.logs, self.injector.counts
        elapsed = max(self.timer.elapsed, 1e-6)
        running = self.pool.running()
        paused = sum(1 for s in running if s.paused)
        refused, lost = logs.refused(), logs.lost()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        grid.add_row(
            "work",
            f"submitted {p.submitted}/{self.s.turns} · distinct {p.distinct} · dedup hits {p.dedup_hits}"
            f" · cancelled {p.cancelled} · acked {logs.acked_batches} · queued {max(p.queued, 0)}",
        )
        grid.add_row(
            "turns",
            f"committed {logs.turns} ({logs.turns / elapsed:.1f}/s) · items {logs.acked_items}"
            f" · lease busy {logs.counter('lease_busy')}",
        )
        grid.add_row(
            "workers",
            f"{len(running) - paused} running · {paused} paused (zombie) · {self.pool.incarnations} incarnations"
            + (
                f" · [red]{len(self.pool.stats.unexpected_exits)} crashed[/red]"
                if self.pool.stats.unexpected_exits
                else ""
            ),
        )
        faults = " · ".join(f"{k} {inj[k]}" for k in self.s.faults) or "none"
        if "drop" in self.s.faults:
            faults += f" ({inj['connections_killed']} connections killed)"
        grid.add_row("faults", faults)
        grid.add_row(
            "refused",
            f"stale writes {logs.stale_refusals()} (commits: lease {refused['SessionExecutionLeaseExpired']}"
            f" · claim {refused['QueuedWorkClaimExpired']} · revision {refused['HeadRevisionConflict']};"
            f" renewals/claims {sum(v for k, v in lost.items() if k != 'BackendUnavailable')})"
            f" · turns lost to dropped connections {lost['BackendUnavailable']}"
            f" · commit replays {logs.log_lines['commit_retry']}",
        )
        bar = ProgressBar(total=max(self.s.turns, 1), completed=p.submitted, width=40)
        done = p.distinct - p.cancelled
        acked_bar = ProgressBar(total=max(done, 1), completed=min(logs.acked_batches, max(done, 1)), width=40)
        bars = Table.grid(padding=(0, 2))
        bars.add_row(Text("submitted", style="dim"), bar, Text("acked", style="dim"), acked_bar)
        title = (
            f"sessionfence fleet · {self.prefix} · {self.s.sessions} sessions · {self.s.workers} workers"
            f" · {self.phase} · {elapsed:.1f}s"
        )
        return Group(Panel(Group(grid, bars), title=title, title_align="left"))

    def status_line(self) -> str:
        p, logs = self.producer.stats, self.logs
        return (
            f"[{self.timer.elapsed:6.1f}s] {self.phase}: submitted {p.submitted}/{self.s.turns}, acked "
            f"{logs.acked_batches}, turns {logs.turns}, faults {dict(self.injector.counts)}, "
            f"refused {dict(logs.refused())}"
        )

    async def _watch(self, live: Live | None, stop: asyncio.Event) -> None:
        last_line = 0.0
        while not stop.is_set():
            self.logs.poll()
            if self.phase in ("producing", "draining"):
                self.pool.check()
            if live is not None:
                live.update(self.render(), refresh=True)
            elif time.monotonic() - last_line > 2.0:
                last_line = time.monotonic()
                self.out.print(self.status_line(), highlight=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    # -- phases --------------------------------------------------------------------------------------------
    async def _setup(self) -> None:
        try:
            info = await self.client.info("server")
            cluster = await self.client.info("cluster")
        except RedisError as exc:
            raise FleetSetupError(f"cannot reach Redis at {redact(self.url)}: {exc}") from exc
        if int(cluster.get("cluster_enabled", 0)):
            raise FleetSetupError(
                "fleet runs against a standalone Redis (or a primary with replicas), not a cluster"
            )
        self.redis_version = str(info.get("redis_version", "?"))
        settings = asdict(self.s)
        await self.client.hset(
            fleet_key(self.prefix, "run"),
            mapping={
                "settings": orjson.dumps(settings),
                "sessions": orjson.dumps(self.sessions),
                "log_dir": orjson.dumps(str(self.log_dir)),
                "started_at": orjson.dumps(datetime.now(UTC).isoformat()),
            },
        )
        for sid in self.sessions:
            await self.factory.create_store(
                SessionStoreCreateRequest(sid, SessionRelation.root(), LEDGER_MODEL, "fleet")
            )

    async def _drain(self) -> bool:
        deadline = time.monotonic() + self.s.drain_timeout_s
        while time.monotonic() < deadline and not self.abort.is_set():
            if await self.producer.refresh_queued() == 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.abort.wait(), 0.1)
        return await self.producer.refresh_queued() == 0

    def _on_signal(self, signum: int) -> None:
        """First SIGINT/SIGTERM: stop producing, stop the workers, clean up, exit. Second: cancel outright."""
        if self.abort.is_set() and self._main_task is not None:
            self._main_task.cancel()
            return
        self.out.print(f"[yellow]{signal.Signals(signum).name}: stopping the fleet and cleaning up[/yellow]")
        self.interrupted = True
        self.phase = "aborting"
        self.abort.set()

    def _install_signal_handlers(self) -> list[tuple[int, Any]]:
        """Route SIGINT/SIGTERM to `_on_signal`; returns what to restore (signal, previous handler)."""
        loop = asyncio.get_running_loop()
        installed: list[tuple[int, Any]] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN:  # e.g. SIGINT in a background job: leave it ignored
                continue
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append((sig, previous))
        return installed

    async def run(self) -> dict[str, Any]:
        """The whole run; raises FleetInterrupted (after cleaning up) on SIGINT/SIGTERM."""
        live: Live | None = None
        watch_stop = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        self._main_task = asyncio.current_task()
        installed = self._install_signal_handlers()
        try:
            await self._setup()
            self.timer.mark("setup")
            self.pool.start()
            if self.out.is_terminal:
                live = Live(self.render(), console=self.out, auto_refresh=False, transient=False)
                live.start()
            watcher = asyncio.create_task(self._watch(live, watch_stop))
            self.phase = "producing"
            stop_faults = asyncio.Event()
            injector = asyncio.create_task(self.injector.run(stop_faults))
            try:
                await self.producer.run(self.abort)
            finally:
                stop_faults.set()
                await injector
                await self.injector.finish()
            self.timer.mark("produce")
            if not self.abort.is_set():
                self.phase = "draining"
                self.drained = await self._drain()
                self.timer.mark("drain")
            self.phase = "stopping" if not self.abort.is_set() else "aborting"
            await self.pool.stop(grace_s=5.0 if self.abort.is_set() else 15.0)
            self.timer.mark("stop")
            watch_stop.set()
            await watcher
            self.logs.poll(final=True)
            if live is not None:
                live.update(self.render(), refresh=True)
                live.stop()
                live = None
            if self.abort.is_set():
                raise FleetInterrupted()
            self.phase = "verifying"
            verification = await verify_fleet(self.client, self.prefix, log_dir=self.log_dir)
            if not self.drained:
                verification.violations.insert(
                    0,
                    f"undrained: queues were not empty {self.s.drain_timeout_s:.0f}s after production ended",
                )
            self.timer.mark("verify")
            self.phase = "done"
            return self.report(verification)
        except asyncio.CancelledError:
            self.interrupted = True
            raise
        finally:
            watch_stop.set()
            if watcher is not None and not watcher.done():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if live is not None:
                live.stop()
            await self.injector.finish()
            await self.pool.stop(grace_s=5.0 if self.interrupted else 15.0)
            await self._cleanup()
            loop = asyncio.get_running_loop()
            for sig, previous in installed:
                loop.remove_signal_handler(sig)
                with contextlib.suppress(TypeError, ValueError):
                    signal.signal(sig, previous)

    async def _cleanup(self) -> None:
        if self.s.keep:
            self.out.print(
                f"[dim]--keep: run keys stay under prefix {self.prefix}, worker logs in {self.log_dir}[/dim]"
            )
        else:
            with contextlib.suppress(Exception):
                await delete_run(self.client, self.prefix, self.sessions)
            shutil.rmtree(self.log_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            await self.client.aclose()

    # -- report --------------------------------------------------------------------------------------------
    def report(self, v: Verification) -> dict[str, Any]:
        logs, p = self.logs, self.producer.stats
        active = self.timer.marks.get("produce", 0.0) + self.timer.marks.get("drain", 0.0)
        counters = logs.counters()
        return {
            "ok": v.ok,
            "prefix": self.prefix,
            "log_dir": str(self.log_dir) if self.s.keep else None,
            "redis": {"url": redact(self.url), "embedded": self.embedded, "version": self.redis_version},
            "seed": self.s.seed,
            "settings": {**asdict(self.s), "backlog": self.s.effective_backlog()},
            "durations_s": {**self.timer.marks, "total": round(self.timer.elapsed, 3)},
            "throughput": {
                "committed_turns_per_s": round(v.committed_turns / active, 1) if active else None,
                "acked_batches_per_s": round(v.acked_batches / active, 1) if active else None,
            },
            "producer": {
                "submitted": p.submitted,
                "distinct_batches": p.distinct,
                "by_kind": dict(p.by_kind),
                "repeats": p.repeats,
                "dedup_hits": p.dedup_hits,
                "dedup_new_batch": p.dedup_new,
                "cancelled": p.cancelled,
                "cancel_missed": p.cancel_missed,
            },
            "commits": {
                "committed_turns": v.committed_turns,
                "coalesced_turns": v.coalesced_turns,
                "acked_batches": v.acked_batches,
                "acked_items": v.acked_items,
                "logged_by_workers": len(logs.committed),
                "commit_retries": logs.log_lines["commit_retry"],
            },
            "refusals": {
                "commit_refused": dict(logs.refused()),
                "turn_lost": dict(logs.lost()),
                "failed": logs.outcomes["failed"],
                "stale_writes_refused": logs.stale_refusals(),
                "lease_busy": counters["lease_busy"],
            },
            "faults": {k: self.injector.counts[k] for k in (*FAULT_KINDS, "connections_killed")}
            | (
                {"drop_unavailable": self.injector.counts["drop_unavailable"]}
                if self.injector.counts["drop_unavailable"]
                else {}
            ),
            "workers": {
                "slots": self.s.workers,
                "incarnations": self.pool.incarnations,
                "unexpected_exits": self.pool.stats.unexpected_exits,
                "crashes": logs.crashes,
            },
            "drained": self.drained,
            "violations": v.to_json()["violations"],
            "verification": {
                k: val for k, val in v.to_json().items() if k not in ("violations", "sessions", "ok")
            },
            "sessions": [asdict(s) for s in v.sessions],
        }


async def delete_run(client: Any, prefix: str, sessions: list[str] | None = None) -> None:
    """Delete every key of a run: each session through the factory, then whatever is left under the prefix."""
    factory = AsyncRedisStoreFactory(client, key_prefix=prefix)
    if sessions is None:
        raw = await client.hget(fleet_key(prefix, "run"), "sessions")
        sessions = list(orjson.loads(raw)) if raw else []
    for sid in sessions:
        await factory.delete_session(sid)
    batch: list[Any] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


# ----------------------------------------------------------------------------------------------------------
# Output


def summary_table(report: dict[str, Any]) -> Table:
    ok = report["ok"]
    table = Table(
        title=f"fleet {report['prefix']} — {'VERIFIED' if ok else 'VIOLATIONS FOUND'}", title_style="bold"
    )
    table.add_column("check / metric", style="cyan", no_wrap=True)
    table.add_column("value")
    c, r, f, pr = report["commits"], report["refusals"], report["faults"], report["producer"]
    d, th = report["durations_s"], report["throughput"]
    table.add_row(
        "redis",
        f"{report['redis']['url']} (v{report['redis']['version']}"
        + (", embedded" if report["redis"]["embedded"] else "")
        + ")",
    )
    table.add_row(
        "duration",
        f"{d['total']:.1f}s total · " + " · ".join(f"{k} {v:.1f}s" for k, v in d.items() if k != "total"),
    )
    rate = report["settings"]["rate"]
    table.add_row(
        "throughput",
        f"{th['committed_turns_per_s']} turns/s · {th['acked_batches_per_s']} batches/s"
        + (f" (producer capped at {rate:g} batches/s)" if rate else " (producer uncapped)"),
    )
    table.add_row(
        "batches",
        f"{pr['submitted']} submitted · {pr['distinct_batches']} distinct · {pr['dedup_hits']} dedup hits"
        f" · {pr['cancelled']} cancelled",
    )
    table.add_row("acked exactly once", f"{c['acked_batches']} batches / {c['acked_items']} items")
    table.add_row(
        "committed turns",
        f"{c['committed_turns']} ({c['coalesced_turns']} joined several batches)",
    )
    table.add_row("faults", " · ".join(f"{k} {v}" for k, v in f.items()))

    def kinds(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

    lost = dict(r["turn_lost"])
    dropped = lost.pop("BackendUnavailable", 0)
    table.add_row(
        "refused stale writes",
        f"{r['stale_writes_refused']} (not violations: the fence at work) · commits refused: "
        f"{kinds(r['commit_refused'])} · renewals/claims refused: {kinds(lost)}",
    )
    table.add_row(
        "dropped connections",
        f"{dropped} turn(s) abandoned · {c['commit_retries']} commit outcome(s) unknown, retried as replays",
    )
    w = report["workers"]
    table.add_row(
        "workers",
        f"{w['slots']} slots · {w['incarnations']} incarnations"
        + (f" · [red]{len(w['unexpected_exits'])} unexpected exits[/red]" if w["unexpected_exits"] else ""),
    )
    table.add_row(
        "checked",
        "each batch acked exactly once or cancelled · fencing tokens rise · history is a tree, head revision ="
        " turns · claim policies · source-key dedup · ledger = usage · worker logs = Redis · queues drained",
    )
    table.add_row("violations", "[green]none[/green]" if ok else f"[red]{len(report['violations'])}[/red]")
    return table


def print_summary(report: dict[str, Any], out: Console) -> None:
    out.print(summary_table(report))
    if report["violations"]:
        out.print(
            Panel("\n".join(escape(v) for v in report["violations"][:50]), title="violations", style="red")
        )
    for crash in report["workers"]["crashes"]:
        out.print(f"[red]worker crash:[/red] {escape(crash)}")


async def _run_async(url: str, settings: FleetSettings, out: Console, embedded: bool) -> dict[str, Any]:
    return await FleetRun(url, settings, out, embedded=embedded).run()


def run_fleet(
    url: str, settings: FleetSettings, out: Console | None = None, *, embedded: bool = False
) -> dict[str, Any]:
    """Run the fleet against `url` and return the report (a JSON-able dict; `report["ok"]` is the verdict)."""
    return asyncio.run(_run_async(url, settings, out or console, embedded))


def verify_prefix(url: str, prefix: str) -> Verification:
    """Verify an existing run (e.g. one kept with --keep) from Redis alone, plus its worker logs if still there."""

    async def main() -> Verification:
        client = redis.asyncio.Redis.from_url(url)
        try:
            raw = await client.hget(fleet_key(prefix, "run"), "log_dir")
            log_dir = Path(orjson.loads(raw)) if raw else None
            return await verify_fleet(client, prefix, log_dir=log_dir)
        finally:
            await client.aclose()

    return asyncio.run(main())


# ----------------------------------------------------------------------------------------------------------
# The command

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        help="Redis to run against (verifies that deployment). Without it (and without REDIS_URL) a private "
        "embedded redis-server is started and removed on exit.",
    ),
]


def fleet(
    redis_url: RedisUrl = None,
    sessions: Annotated[int, typer.Option(min=1, help="Sessions to spread the work over.")] = 16,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (each a SessionWorker).")] = 4,
    turns: Annotated[
        int,
        typer.Option(
            min=1,
            help="Work batches the producer submits (user turns, wakes, commands, timers; a repeated source key "
            "counts too). Each must be acked exactly once or cancelled. A worker may join several JOIN batches "
            "into one committed turn, so committed turns <= this.",
        ),
    ] = 600,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults to inject, comma-separated: kill (SIGKILL + respawn), pause (SIGSTOP past "
            "the lease TTL, then SIGCONT: a zombie writer), drop (CLIENT KILL its connections); "
            "'none' for a clean run."
        ),
    ] = "kill,pause,drop",
    seed: Annotated[
        int | None, typer.Option(help="Seed of the work mix and fault schedule (default: random).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report to this path.")] = None,
    keep: Annotated[
        bool, typer.Option(help="Keep the run's keys and worker logs (for --verify-only).")
    ] = False,
    lease_ttl_ms: Annotated[int, typer.Option(min=100, help="Lease and claim TTL of the workers.")] = 2000,
    fault_interval: Annotated[float, typer.Option(min=0.05, help="Mean seconds between faults.")] = 1.0,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Max batches/s the producer submits (default: 12.5 per worker, so faults land throughout "
            "the run; 0: as fast as the workers ack, a throughput test).",
        ),
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds the queues get to empty after production.")
    ] = 60.0,
    verify_only: Annotated[
        str | None,
        typer.Option(help="Do not run: verify the kept run with this key prefix (needs --redis-url)."),
    ] = None,
) -> None:
    """Run worker processes under injected faults and verify exactly-once, fencing, history and ledger invariants.

    Starts WORKERS processes running the sessionfence worker runtime, a producer that submits TURNS work batches
    over SESSIONS sessions, and a fault injector; then drains, stops the workers and checks from Redis and the
    workers' logs that every batch was acked exactly once (or cancelled), no stale fence ever committed, every
    session's history is a valid tree whose head revision counts its turns, and the ledger matches the usage
    reported. Point it at your Redis with --redis-url to verify that deployment (the run uses its own key
    prefix and deletes its keys at the end). The defaults take about 15-30 s.

    Exit status: 0 verified, 1 violations (listed), 2 Redis unusable, 130 interrupted (SIGINT/SIGTERM).
    """
    fault_kinds = parse_faults(faults)
    if verify_only is not None:
        if not redis_url:
            raise typer.BadParameter("--verify-only needs --redis-url (an embedded Redis starts empty)")
        checked = verify_prefix(redis_url, verify_only)
        for line in checked.violations:
            console.print(f"[red]violation:[/red] {escape(line)}")
        console.print(
            f"{verify_only}: {checked.committed_turns} turns, {checked.acked_batches} batches acked exactly once, "
            f"{len(checked.violations)} violation(s)"
        )
        if report is not None:
            report.write_bytes(orjson.dumps(checked.to_json(), option=orjson.OPT_INDENT_2))
        console.print(
            f"[dim]the run's keys are left as they are; remove them with: redis-cli -u {redact(redis_url)} "
            f"--scan --pattern '{verify_only}:*' | xargs -r redis-cli -u {redact(redis_url)} unlink[/dim]"
        )
        raise typer.Exit(0 if checked.ok else 1)
    settings = FleetSettings(
        sessions=sessions,
        workers=workers,
        turns=turns,
        faults=fault_kinds,
        seed=seed if seed is not None else secrets.randbelow(2**31),
        lease_ttl_ms=lease_ttl_ms,
        claim_ttl_ms=lease_ttl_ms,
        fault_interval_s=fault_interval,
        rate=rate if rate is not None else RATE_PER_WORKER * workers,
        drain_timeout_s=drain_timeout,
        keep=keep,
    )
    if keep and not redis_url:
        console.print(
            "[yellow]--keep without --redis-url: the embedded Redis is removed on exit anyway[/yellow]"
        )
    try:
        with redis_target(redis_url, console) as url:
            console.print(
                f"fleet: {settings.sessions} sessions, {settings.workers} workers, {settings.turns} batches, "
                f"faults {','.join(settings.faults) or 'none'}, seed {settings.seed}"
            )
            result = run_fleet(url, settings, console, embedded=not redis_url)
    except (FleetInterrupted, KeyboardInterrupt):
        console.print("[yellow]interrupted: workers stopped, run keys removed, nothing verified[/yellow]")
        raise typer.Exit(130) from None
    except FleetSetupError as exc:
        console.print(f"[red]fleet: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    print_summary(result, console)
    if report is not None:
        report.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        console.print(f"report written to {report}")
    raise typer.Exit(0 if result["ok"] else 1)
