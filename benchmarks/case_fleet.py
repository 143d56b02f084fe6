"""Case 6, fleet throughput: committed turns/s of ``sessionfence fleet`` with 1, 2, 4 and 8 worker processes.

The fleet command's own machinery (``sessionfence.cli.fleet.run_fleet`` with `FleetSettings`): 16 sessions, a
producer submitting batches as fast as the workers ack (``rate 0``), no faults, worker processes running the
shipped `SessionWorker`, then the full verification (every batch acked exactly once, fencing, history, ledger).
Throughput is the fleet report's ``committed_turns_per_s`` (committed turns over the produce + drain phases,
worker start-up included). Two series: the fleet's default simulated turn (a model call of 0-30 ms) and an
instant turn (``max_turn_sleep_ms=0``), where the store and the 2 CPUs are the limit. No peer: absolute only.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from .common import console
from .suite import CaseResult, Ctx, Row, Skip, Stopwatch, rate_stats

CASE = "fleet"
TITLE = "6. Fleet throughput: `sessionfence fleet` committed turns/s with 1, 2, 4, 8 worker processes, no faults"
WORKERS = (1, 2, 4, 8)


def run(ctx: Ctx) -> CaseResult:
    watch = Stopwatch()
    result = CaseResult(CASE, TITLE)
    try:
        from rich.console import Console

        from sessionfence.cli.fleet import FleetSettings, run_fleet
    except ImportError as exc:
        result.skipped.append(Skip("fleet", f"sessionfence.cli.fleet is not importable: {exc}"))
        return result
    fields = {f.name for f in dataclasses.fields(FleetSettings)}
    turns = ctx.pick(200, 600)
    series = [("model call 0-30 ms (fleet default)", None)]
    if not ctx.quick:
        series.append(("instant turn (max_turn_sleep_ms 0)", 0))
    reports: dict[str, Any] = {}
    for label, sleep in series:
        for workers in WORKERS:
            wanted: dict[str, Any] = {
                "workers": workers, "faults": (), "rate": 0.0, "turns": turns, "seed": 7, "sessions": 16,
            }
            if sleep is not None:
                wanted["max_turn_sleep_ms"] = sleep
            missing = sorted(set(wanted) - fields)
            key = f"fleet_{workers}" + ("" if sleep is None else "_instant")
            if missing:
                result.skipped.append(Skip(f"fleet {label}, {workers} workers", f"FleetSettings lacks {missing}"))
                continue
            try:
                report = run_fleet(ctx.url, FleetSettings(**wanted), Console(file=io.StringIO()),
                                   embedded=ctx.server.embedded)
            except Exception as exc:  # the fleet command is still moving: report, do not lose the other cases
                result.skipped.append(Skip(f"fleet {label}, {workers} workers", f"{type(exc).__name__}: {exc}"))
                continue
            tps = report.get("throughput", {}).get("committed_turns_per_s")
            commits = report.get("commits", {})
            reports[key] = {k: report.get(k) for k in ("ok", "throughput", "durations_s", "commits", "violations")}
            console.print(f"[dim]fleet {label}, {workers} workers: {tps} turns/s, ok={report.get('ok')}[/dim]")
            if tps is None:
                result.skipped.append(Skip(f"fleet {label}, {workers} workers", "no throughput in the report"))
                continue
            note = f"{commits.get('committed_turns')} turns, {commits.get('acked_items')} items"
            if not report.get("ok"):
                note += f"; VERIFICATION FAILED: {len(report.get('violations') or [])} violation(s)"
            result.rows.append(Row(
                key=key, system="sessionfence fleet", operation=f"committed turns ({label})",
                mode=f"{workers} worker process{'es' if workers > 1 else ''}", rate=rate_stats([float(tps)]),
                unit="turns/s", note=note,
                extra={"acked_batches_per_s": report.get("throughput", {}).get("acked_batches_per_s"),
                       "durations_s": report.get("durations_s"), "verified": report.get("ok")},
            ))
    result.extra = {"turns": turns, "reports": reports}
    result.elapsed_s = watch.elapsed
    return result
