"""Case 3 (+ 8), queue cycle: items/s through enqueue -> claim -> ack with no-op work, against arq, RQ and BullMQ.

Method (peer-baselines.md's): per system and run, N no-op jobs are enqueued first (the first ``timed`` of them
one at a time, each awaited, which is the enqueue figure; the rest in bulk, untimed), then ONE fresh worker
process is started and the rate is N / (time of the N-th completion - time just before the process was
spawned), so worker start-up counts, as for the peers. The steady rate (first to N-th completion) is kept too.
Every system runs once per run, in rotated order, so all of them share each run's background load.

* sessionfence ``cycle`` (``sf_drain.py``): per session, hold the execution lease and loop
  ``claim_ready_queued_work(max_batches=1)`` -> ``commit_runtime_state`` acking the claim (fence, CAS, turn
  stamp). 1 session = one job at a time; 10 and 50 sessions = 10 / 50 concurrent asyncio tasks in the process
  (a session's work is serial by design: concurrency comes from sessions). ``cycle-sync``: the same, one
  session, on redis-py's blocking client (its command packing is C; the asyncio client's is Python).
* sessionfence ``runtime``: the shipped `SessionWorker` over 16 sessions, up to 8 ready batches joined per turn.
* arq 0.28.0 (own venv): defaults (max_jobs 10, poll_delay 0.5 s) and tuned (max_jobs 10, poll_delay 0).
* RQ 3.0.0: ``SimpleWorker`` (no fork), burst.
* BullMQ 6.7.0 (Node): one ``Worker``, concurrency 1 and 50.

Targets: sessionfence >= 2x arq (tuned and defaults) and RQ; >= 1x BullMQ.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from sessionfence import DeliveryPolicy, QueuedWorkBatchDraft, RedisStoreFactory, SlotPolicy
from sessionfence.codec import signal_ready_call
from sessionfence.scripts import run_sync, script

from . import peers
from .common import ServerProbe, console
from .suite import CaseResult, Ctx, Ratio, Row, Skip, Stopwatch, rate_stats, rotated

CASE = "queue"
TITLE = "3. Queue cycle: enqueue -> claim -> ack-in-commit, no-op work, one fresh worker process (+ 8. BullMQ)"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class System:
    key: str
    family: str  # sf | arq | rq | bullmq
    label: str
    mode: str
    lanes: int = 1  # sessionfence sessions (one asyncio task each)
    max_batches: int = 1
    sf_mode: str = "cycle"
    max_jobs: int = 10
    poll_delay: float = 0.5
    concurrency: int = 1


SYSTEMS = [
    System("sf_1", "sf", "sessionfence", "1 session: 1 job at a time"),
    System("sf_1_sync", "sf", "sessionfence", "1 session, blocking client (RedisStore)", sf_mode="cycle-sync"),
    System("sf_10", "sf", "sessionfence", "10 sessions, 10 tasks", lanes=10),
    System("sf_50", "sf", "sessionfence", "50 sessions, 50 tasks", lanes=50),
    System("sf_runtime", "sf", "sessionfence SessionWorker", "16 sessions, <= 8 batches/turn", lanes=16,
           max_batches=8, sf_mode="runtime"),
    System("arq_default", "arq", f"arq {peers.ARQ_VERSION}", "defaults: max_jobs 10, poll_delay 0.5 s"),
    System("arq_tuned", "arq", f"arq {peers.ARQ_VERSION}", "tuned: max_jobs 10, poll_delay 0", poll_delay=0.0),
    System("rq", "rq", "RQ", "SimpleWorker (no fork), burst"),
    System("bullmq_1", "bullmq", f"BullMQ {peers.BULLMQ_VERSION}", "1 Worker, concurrency 1"),
    System("bullmq_50", "bullmq", f"BullMQ {peers.BULLMQ_VERSION}", "1 Worker, concurrency 50", concurrency=50),
]
ENQUEUE_LABELS = {
    "sf": ("sessionfence", "enqueue_queued_work, sync"),
    "arq": (f"arq {peers.ARQ_VERSION}", "enqueue_job, asyncio"),
    "rq": ("RQ", "Queue.enqueue, sync"),
    "bullmq": (f"BullMQ {peers.BULLMQ_VERSION}", "Queue.add (Node)"),
}


class DrainFailed(Exception):
    pass


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise DrainFailed(f"no JSON result in output: {text[-500:]!r}")


def _spawn(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:  # the worker did not finish: a failure, reported as a skip
        raise DrainFailed(f"`{' '.join(cmd[:3])}` timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise DrainFailed(f"`{' '.join(cmd[:3])}` exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return _last_json(done.stdout)


def _delete_patterns(client: redis.Redis, patterns: list[str]) -> None:
    for pattern in patterns:
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


class QueueBench:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.n: int = ctx.pick(1000, 5000)
        self.timed: int = ctx.pick(300, 1000)
        self.runs: int = ctx.runs_or(ctx.pick(1, 3))
        self.timeout = max(120.0, self.n / 40)
        self.admin = ctx.admin
        self.probe = ServerProbe(self.admin)
        self.arq_python: Path | None = None
        self.node: tuple[str, Path] | None = None
        self.rq_version: str | None = None
        self.skips: dict[str, str] = {}

    # -- availability ----------------------------------------------------------------------------------------
    def prepare(self) -> list[System]:
        try:
            import rq

            self.rq_version = rq.__version__
        except ImportError as exc:
            self.skips["rq"] = f"rq is not installed ({exc}); install the bench extra: pip install -e '.[bench]'"
        try:
            self.arq_python = peers.ensure_arq(self.ctx.peers_dir)
        except peers.PeerUnavailable as exc:
            self.skips["arq"] = str(exc)
        try:
            self.node = peers.ensure_bullmq(self.ctx.peers_dir)
        except peers.PeerUnavailable as exc:
            self.skips["bullmq"] = str(exc)
        return [s for s in SYSTEMS if s.family not in self.skips]

    # -- enqueue ---------------------------------------------------------------------------------------------
    def sf_enqueue(self, prefix: str, sids: list[str], signal: bool) -> float:
        client = redis.Redis.from_url(self.ctx.url)
        try:
            factory = RedisStoreFactory(client, key_prefix=prefix)
            stores = [factory.store(sid) for sid in sids]

            def draft(i: int) -> QueuedWorkBatchDraft:
                return QueuedWorkBatchDraft(
                    session_id=sids[i % len(sids)],
                    delivery_policy=DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT,
                    slot_policy=SlotPolicy.JOIN,
                    payloads=[{"job": "noop", "i": i}],
                )

            drafts = [draft(i) for i in range(self.n)]
            start = time.perf_counter()
            for i in range(self.timed):
                stores[i % len(sids)].enqueue_queued_work(drafts[i])
            timed_s = time.perf_counter() - start
            if self.timed == 0:
                stores[0].enqueue_queued_work(drafts[0])
            sha = script("enqueue").sha
            first_bulk = max(self.timed, 1)
            for offset in range(first_bulk, self.n, 500):
                pipe = client.pipeline(transaction=False)
                for i in range(offset, min(self.n, offset + 500)):
                    call = stores[i % len(sids)]._codec.enqueue(drafts[i])
                    pipe.evalsha(sha, len(call.keys), *call.keys, *call.args)
                pipe.execute()
            if signal:
                for sid in sids:
                    call = signal_ready_call(prefix, sid, 0)
                    run_sync(client, call.script, call.keys, call.args)
            return timed_s
        finally:
            client.close()

    # -- one system, one run ---------------------------------------------------------------------------------
    def run_one(self, system: System) -> dict[str, Any]:
        ctx, n = self.ctx, self.n
        repo = ctx.repo_root
        tag = ctx.prefix(f"sfq{system.key.replace('_', '')}")
        cleanup: list[str] = [f"{tag}:*"]
        env: dict[str, str] | None = None
        if system.family == "sf":
            sids = [f"s{i:03d}" for i in range(system.lanes)]
            timed_s = self.sf_enqueue(tag, sids, signal=system.sf_mode == "runtime")
            cmd = [sys.executable, "-m", "benchmarks.sf_drain", system.sf_mode, ctx.url, tag, str(n),
                   str(system.max_batches), *sids]
        elif system.family == "rq":
            from .peer_rq import enqueue as rq_enqueue

            timed_s = float(rq_enqueue(ctx.url, tag, tag, n, self.timed)["timed_s"])
            cmd = [sys.executable, "-m", "benchmarks.peer_rq", "drain", ctx.url, tag, str(n)]
            cleanup += [f"rq:*{tag}*"]
        elif system.family == "arq":
            assert self.arq_python is not None
            script_path = str(HERE / "peer_arq.py")
            out = _spawn([str(self.arq_python), script_path, "enqueue", ctx.url, tag, str(n), str(self.timed)],
                         repo, self.timeout)
            timed_s = float(out["timed_s"])
            cmd = [str(self.arq_python), script_path, "drain", ctx.url, tag, str(n), str(system.max_jobs),
                   str(system.poll_delay)]
            cleanup += [f"arq:*{tag}-*"]
        else:
            assert self.node is not None
            node, module = self.node
            env = {**os.environ, "BULLMQ_DIR": str(module)}
            script_path = str(HERE / "peer_bullmq.cjs")
            out = _spawn([node, script_path, "enqueue", ctx.url, tag, str(n), str(self.timed)], repo, self.timeout,
                         env)
            timed_s = float(out["timed_s"])
            cmd = [node, script_path, "drain", ctx.url, tag, str(n), str(system.concurrency)]
        rq_globals = ("rq:clean_groups", "rq:queues", "rq:workers")  # RQ's own keys, outside our tag
        absent = [k for k in rq_globals if not self.admin.exists(k)] if system.family == "rq" else []
        before = self.probe.snapshot()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        spawned = time.time()
        out = _spawn(cmd, repo, self.timeout, env)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = self.probe.snapshot()
        worker_cpu_s = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
        delta = ServerProbe.delta(before, after)
        if system.family == "rq":
            self.admin.srem("rq:queues", f"rq:queue:{tag}")
            self.admin.srem("rq:workers", f"rq:worker:{tag}-worker")
            if absent:
                self.admin.unlink(*absent)  # created by this run's worker: leave the server as found
        _delete_patterns(self.admin, cleanup)
        ctx.prefixes.remove(tag)
        items = int(out.get("items", out.get("jobs", 0)))
        if items < n or out.get("done") is None:
            raise DrainFailed(f"{system.key}: the worker acked {items} of {n} jobs: {out}")
        done, first = float(out["done"]), float(out["first"])
        return {
            "rate": n / (done - spawned),
            "steady": (n - 1) / (done - first) if done > first else float("nan"),
            "startup_s": first - spawned,
            "enqueue_rate": self.timed / timed_s if timed_s > 0 else float("nan"),
            "commands": delta.commands / n,
            "reads": delta.reads / n,
            "cpu_us": delta.cpu_s * 1e6 / n,
            "worker_cpu_us": worker_cpu_s * 1e6 / n,  # the worker process's CPU (start-up included)
            "turns": out.get("turns"),
        }


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    result = CaseResult(CASE, TITLE)
    bench = QueueBench(ctx)
    systems = bench.prepare()
    for family, reason in bench.skips.items():
        for s in SYSTEMS:
            if s.family == family:
                result.skipped.append(Skip(f"{s.label} ({s.mode})", reason))
    measured: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for run_index in range(bench.runs):
        shown = []
        for system in rotated(systems, run_index):
            if system.key in failed:
                continue
            try:
                out = bench.run_one(system)
            except (DrainFailed, peers.PeerUnavailable, redis.RedisError, OSError) as exc:
                failed[system.key] = str(exc)
                console.print(f"[red]queue {system.key}: {exc}[/red]")
                continue
            measured.setdefault(system.key, []).append(out)
            shown.append(f"{system.key}={out['rate']:,.0f}/s")
        console.print(f"[dim]queue run {run_index + 1}/{bench.runs} (N={bench.n}): {', '.join(shown)}[/dim]")
    for key, reason in failed.items():
        system = next(s for s in SYSTEMS if s.key == key)
        result.skipped.append(Skip(f"{system.label} ({system.mode})", f"failed during the run: {reason}"))
        measured.pop(key, None)
    # enqueue rows: every run of every configuration of a family
    for family, (label, operation) in ENQUEUE_LABELS.items():
        rates = [o["enqueue_rate"] for s in SYSTEMS if s.family == family for o in measured.get(s.key, [])]
        if rates:
            result.rows.append(Row(
                key=f"enqueue_{family}", system=label if family != "rq" else f"RQ {bench.rq_version}",
                operation=operation, mode="one at a time, awaited", rate=rate_stats(rates), unit="jobs/s",
            ))
    for system in SYSTEMS:
        outs = measured.get(system.key)
        if not outs:
            continue
        label = f"RQ {bench.rq_version}" if system.family == "rq" else system.label
        turns = [o["turns"] for o in outs if o.get("turns")]
        steady = statistics.median(o["steady"] for o in outs)
        startup = statistics.median(o["startup_s"] for o in outs)
        worker_cpu = statistics.median(o["worker_cpu_us"] for o in outs)
        note = f"steady {steady:,.0f}/s after a {startup:.2f} s start; worker CPU {worker_cpu:,.0f} µs/job"
        if system.sf_mode == "runtime" and turns:
            note += f"; {bench.n / statistics.median(turns):.1f} items per committed turn"
        result.rows.append(Row(
            key=system.key, system=label, operation="drain N no-op jobs", mode=system.mode,
            rate=rate_stats([o["rate"] for o in outs]), unit="jobs/s",
            server={
                "commands": statistics.median(o["commands"] for o in outs),
                "read_events": statistics.median(o["reads"] for o in outs),
                "cpu_us": statistics.median(o["cpu_us"] for o in outs),
            },
            note=note,
            extra={
                "steady_rate": rate_stats([o["steady"] for o in outs]),
                "startup_s": startup,
                "worker_cpu_us_per_job": worker_cpu,
                "runs": outs,
            },
        ))
    r = result.ratio
    r("queue 1 at a time: sessionfence / RQ", "sf_1", "rq", 2.0)
    r("queue 10-way: sessionfence 10 sessions / arq tuned (poll_delay 0)", "sf_10", "arq_tuned", 2.0)
    r("queue 10-way: sessionfence 10 sessions / arq defaults", "sf_10", "arq_default", 2.0)
    r("queue 1 at a time: sessionfence / BullMQ concurrency 1", "sf_1", "bullmq_1", 1.0)
    r("queue 50-way: sessionfence 50 sessions / BullMQ concurrency 50", "sf_50", "bullmq_50", 1.0)
    r("queue 1 at a time, blocking client: sessionfence / BullMQ concurrency 1", "sf_1_sync", "bullmq_1", 1.0,
      headline=False, note="the same cycle on redis-py's blocking client (C command packing)")
    r("queue: SessionWorker runtime / arq tuned", "sf_runtime", "arq_tuned", 2.0, headline=False,
      note="the shipped worker joins ready batches into one turn")
    r("queue: SessionWorker runtime / BullMQ concurrency 1", "sf_runtime", "bullmq_1", 1.0, headline=False)
    r("enqueue one at a time: sessionfence / BullMQ", "enqueue_sf", "enqueue_bullmq", 1.0, headline=False)
    r("enqueue one at a time: sessionfence / RQ", "enqueue_sf", "enqueue_rq", 1.0, headline=False)
    r("enqueue one at a time: sessionfence / arq", "enqueue_sf", "enqueue_arq", 1.0, headline=False)
    for key, label in (("sf_1", "bullmq_1"), ("sf_10", "arq_tuned"), ("sf_50", "bullmq_50")):
        a, b = result.row(key), result.row(label)
        if a and b:
            sa, sb = a.extra["steady_rate"], b.extra["steady_rate"]
            result.ratios.append(Ratio(
                f"queue steady state (start-up excluded): {key} / {label}", key, label, sa["median"] / sb["median"],
                2.0 if label.startswith("arq") else 1.0, headline=False,
                note="first to N-th completion, so worker start-up (Python vs Node) does not count",
            ))
    reasons = {s.key: failed.get(s.key) or bench.skips.get(s.family) for s in SYSTEMS}
    for ratio in result.ratios:
        if ratio.value is None:
            why = reasons.get(ratio.denominator) or reasons.get(ratio.numerator) or bench.skips.get(
                ratio.denominator.removeprefix("enqueue_"))
            ratio.note = (ratio.note + "; " if ratio.note else "") + f"not measured: {why or 'no data'}"
    result.extra = {"n": bench.n, "timed_enqueue": bench.timed, "runs": bench.runs}
    result.elapsed_s = watch.elapsed
    return result
