"""``python -m benchmarks``: every benchmark case against its peers in one run, with a table, JSON and plots.

    .venv/bin/python -m benchmarks [--quick] [--redis-url URL] [--out DIR] [--cases commit,lease,...]
                                   [--postgres-url URL] [--runs N]

Cases: 1 commit floor, 2 lease cycle, 3 queue cycle (with 8, BullMQ), 4 checkpoint store (LangGraph Postgres),
5 scaling, 6 fleet throughput, 7 memory. Each reports absolute numbers and ratios to a peer measured in the
same run. Without ``--redis-url`` a private embedded redis-server (no RDB, no AOF) is started and stopped.
``--quick`` takes about 2 minutes (plus one-off peer installs); a full run about 15 minutes.
Output folder (default ``bench-results/<UTC timestamp>/``): ``results.json``, ``summary.md``, ``*.png``.
Peers that cannot be installed or reached are reported as skipped, with the reason.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import REPO_ROOT, base_parser, console, machine_info, redis_server
from .suite import CaseResult, Ctx

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
CASE_ORDER = ("commit", "lease", "queue", "checkpoint", "scaling", "fleet", "memory")


def _case_runner(name: str) -> Callable[[Ctx], CaseResult]:
    """Each case lives in ``benchmarks/case_<name>.py`` with a ``run(ctx)`` function (imported when it runs)."""
    module = importlib.import_module(f"{__package__ or 'benchmarks'}.case_{name}")
    return module.run  # type: ignore[no-any-return]


def parse_args(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "benchmarks")
    parser.set_defaults(out=None)
    parser.add_argument("--cases", default=",".join(CASE_ORDER), help=f"comma-separated subset of {CASE_ORDER}")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL,
                        help="PostgreSQL for the LangGraph checkpointer peer (case 4); its own schema, dropped after")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.case_list) - set(CASE_ORDER))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {CASE_ORDER}")
    if args.out is None:
        args.out = str(REPO_ROOT / "bench-results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: list[CaseResult] = []
    with redis_server(args.redis_url) as server:
        ctx = Ctx(
            server=server, quick=args.quick, out_dir=out_dir, repo_root=REPO_ROOT,
            postgres_url=args.postgres_url, peers_dir=REPO_ROOT / "bench-results" / ".peers", runs=args.runs,
        )
        try:
            machine = machine_info(ctx.admin, server)
            console.print(
                f"[bold]sessionfence benchmarks[/bold] ({'quick' if args.quick else 'full'}): Redis "
                f"{machine['server']['redis_version']} ({'embedded' if server.embedded else 'given'}), "
                f"{machine['cpu_count']} CPUs, load {_loadavg()}; output {out_dir}"
            )
            for name in (c for c in CASE_ORDER if c in args.case_list):
                console.rule(f"[bold]{name}[/bold]")
                t0 = time.perf_counter()
                try:
                    result = _case_runner(name)(ctx)
                except Exception as exc:  # one broken case must not lose the others' results
                    console.print(f"[red]case {name} failed: {exc}[/red]")
                    console.print(traceback.format_exc(), markup=False, highlight=False)
                    result = CaseResult(name, name, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                    result.elapsed_s = time.perf_counter() - t0
                finally:
                    ctx.cleanup()
                results.append(result)
                from .report import print_case

                print_case(result)
        finally:
            ctx.cleanup()
            ctx.close()
    elapsed = time.perf_counter() - started
    from .report import print_summary, versions, write_outputs

    settings = {
        "quick": args.quick, "cases": args.case_list, "runs_override": args.runs,
        "redis_url_given": bool(args.redis_url), "postgres_url": args.postgres_url,
    }
    payload = {
        "benchmark": "suite",
        "created_utc": datetime.now(UTC).isoformat(),
        "elapsed_s": elapsed,
        "settings": settings,
        "machine": machine,
        "load_average_at_end": _loadavg(),
        "versions": versions(ctx),
        "cases": {r.case: r.to_json() for r in results},
    }
    print_summary(results)
    paths = write_outputs(payload, results, out_dir, plots=not args.no_plots)
    console.print(f"[dim]{elapsed:.0f} s; wrote {', '.join(str(p) for p in paths)}[/dim]")
    return 1 if any(r.error for r in results) else 0


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
