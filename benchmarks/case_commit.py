"""Case 1, commit floor: `commit_floor`'s measurement, run inside the suite (see commit_floor.py for the method).

A sessionfence turn commit (10 nodes of ~300 B JSON, fenced, CAS, stamp, checkpoint, usage) against one
EVALSHA of a minimal script writing the same bytes; sync on one connection and 16 concurrent asyncio clients,
interleaved chunk by chunk. Target: sessionfence >= 0.5x the floor.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace

from . import commit_floor as cf
from .common import print_table, summarize
from .suite import CaseResult, Ctx, Row, Stopwatch

CASE = "commit"
TITLE = "1. Commit floor: sessionfence turn commit vs one raw EVALSHA writing the same bytes"


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    plan = cf.QUICK if ctx.quick else cf.FULL
    if ctx.runs is not None:
        plan = replace(plan, runs=max(1, ctx.runs))
    result = CaseResult(CASE, TITLE)
    bench = cf.Bench(ctx.server, plan)
    try:
        problems = cf.verify_same_bytes(bench)
        with asyncio.Runner() as runner:
            cf.run_cases(bench, runner)
        summaries = {case: summarize(bench.samples[case]) for case in cf.CASES}
        cf.report(bench, summaries)  # commit_floor's own tables
        stages = cf.stage_breakdown(bench)  # where a sync commit's client time goes (no profiler)
        print_table(
            "Client stages of one sync turn (µs per turn, median of 3 passes)", ["stage", "µs/turn"],
            [[name, f"{us:.1f}"] for name, us in stages.items()],
        )
    finally:
        bench.close()
    for case, (label, mode, _floor) in cf.CASES.items():
        s = summaries[case]
        per_op = s.get("server_per_op")
        system = "sessionfence" if label.startswith("sessionfence") else "raw Redis"
        result.rows.append(Row(
            key=case, system=system, operation=label, mode=mode, rate=s["ops_per_s"],
            p50_us=s["latency_us"]["p50"], p99_us=s["latency_us"]["p99"],
            server={k: per_op[k] for k in ("commands", "read_events", "cpu_us")} if per_op else None,
            extra={"client_cpu_us_per_op": s.get("client_cpu_us_per_op")},
        ))
    result.ratio("commit sync / raw floor sync", "sf_sync", "floor_sync", cf.TARGET_RATIO)
    result.ratio(
        f"commit {cf.CONCURRENCY} asyncio clients / raw floor", "sf_concurrent", "floor_concurrent", cf.TARGET_RATIO
    )
    result.ratio("commit asyncio 1 conn / raw floor", "sf_async", "floor_async", cf.TARGET_RATIO, headline=False)
    result.ratio(
        "build+hash+commit sync / raw floor", "sf_sync_build", "floor_sync", cf.TARGET_RATIO, headline=False,
        note="the models and the turn hash built inside the timed loop",
    )
    result.ratio(
        "commit sync / peer-baselines floor (15 cmds)", "sf_sync", "peer_floor_sync", cf.TARGET_RATIO,
        headline=False, note="calibration against the floor script of peer-baselines.md (writes less)",
    )
    result.extra = {"plan": asdict(plan), "floor_same_bytes_problems": problems, "client_stages_us_per_turn": stages}
    result.elapsed_s = watch.elapsed
    return result
