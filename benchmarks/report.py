"""Tables (terminal and Markdown), versions of everything measured, and the output folder of a suite run."""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from . import peers
from .common import console, fmt_us
from .suite import CaseResult, Ctx, Ratio, Row

__all__ = ["markdown_summary", "print_case", "print_summary", "versions", "write_outputs"]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _rate(row: Row, bold: str = "[bold]", end: str = "[/bold]") -> str:
    if row.rate is None:
        return "-"
    r = row.rate
    digits = 1 if r["median"] < 100 else 0
    return f"{_num(r['min'], digits)} / {bold}{_num(r['median'], digits)}{end} / {_num(r['max'], digits)}"


def _server(row: Row, name: str, digits: int) -> str:
    return _num(row.server.get(name), digits) if row.server else "-"


def _ratio_value(r: Ratio) -> str:
    if r.value is None:
        return "skipped"
    digits = 3 if round(r.value, 2) == r.target else 2  # 0.4996 against 0.5 must not read "0.50 MISSED"
    text = f"{r.value:.{digits}f}"
    if r.paired_min is not None and r.paired_max is not None and r.paired_min != r.paired_max:
        text += f" ({r.paired_min:.2f}-{r.paired_max:.2f})"
    return text


def _verdict(r: Ratio) -> str:
    if r.met is None:
        return "skipped"
    return "met" if r.met else "MISSED"


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], wrap: Sequence[str] = ()) -> None:
    """A rich table without the columns that are empty in every row; ``wrap`` columns may wrap."""
    keep = [i for i, _ in enumerate(columns) if any(row[i] not in ("", "-") for row in rows)]
    table = Table(title=title, title_justify="left", show_lines=False)
    for i in keep:
        name = columns[i]
        table.add_column(name, justify="left" if name in wrap or i == 0 else "right", no_wrap=name not in wrap,
                         overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)


def print_case(result: CaseResult) -> None:
    if result.error:
        console.print(f"[red]{result.case}: {result.error.splitlines()[0]}[/red]")
    if result.rows:
        _table(
            result.title,
            ["system", "operation", "mode", "rate min / median / max", "unit", "p50", "p99", "cmds/op", "reads/op",
             "note"],
            [[r.system, r.operation, r.mode, _rate(r), r.unit, fmt_us(r.p50_us) if r.p50_us else "-",
              fmt_us(r.p99_us) if r.p99_us else "-", _server(r, "commands", 1), _server(r, "read_events", 2),
              r.note] for r in result.rows],
            wrap=("system", "operation", "mode", "note"),
        )
    if result.ratios:
        _table(
            f"{result.case}: ratios (median / median; in brackets the range of run-by-run pairs)",
            ["value", "target", "verdict", "ratio", "note"],
            [[_ratio_value(r), r.target_text(), _verdict(r) if r.headline else f"({_verdict(r)})",
              ("[bold]" + r.name + "[/bold]") if r.headline else r.name, r.note] for r in result.ratios],
            wrap=("ratio", "note"),
        )
    for skip in result.skipped:
        console.print(f"[yellow]skipped: {skip.what}: {skip.reason}[/yellow]")
    console.print(f"[dim]{result.case}: {result.elapsed_s:.0f} s[/dim]")


def print_summary(results: Sequence[CaseResult]) -> None:
    rows = []
    for result in results:
        for r in result.ratios:
            if r.headline:
                rows.append([result.case, r.name, _ratio_value(r), r.target_text(), _verdict(r)])
        if result.error:
            rows.append([result.case, "(case failed)", "-", "-", result.error.splitlines()[0][:80]])
    _table("Summary: every headline ratio against its target", ["case", "ratio", "value", "target", "verdict"],
           rows, wrap=("ratio", "verdict"))
    skipped = [(res.case, s) for res in results for s in res.skipped]
    for case, skip in skipped:
        console.print(f"[yellow]skipped ({case}): {skip.what}: {skip.reason}[/yellow]")


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown_summary(payload: dict[str, Any], results: Sequence[CaseResult]) -> str:
    m = payload["machine"]
    lines = [
        f"# Benchmark run {payload['created_utc']} ({'quick' if payload['settings']['quick'] else 'full'})",
        "",
        f"{m['cpu_model']}, {m['cpu_count']} CPUs, {m['memory']}; Python {m['python']}; Redis "
        f"{m['server']['redis_version']} ({'embedded' if m['server']['embedded'] else 'given'}, save "
        f"{m['server']['save']!r}, AOF {m['server']['aof_enabled']}); git {m['git_revision']}; "
        f"{payload['elapsed_s']:.0f} s; load average at the end {payload['load_average_at_end']}.",
        "",
        "## Ratios",
        "",
    ]
    rows = [[res.case, ("**" + r.name + "**") if r.headline else r.name, _ratio_value(r), r.target_text(),
             _verdict(r) if r.headline else f"({_verdict(r)})", r.note]
            for res in results for r in res.ratios]
    lines += [_md_table(["case", "ratio", "value", "target", "verdict", "note"], rows), ""]
    for res in results:
        lines += [f"## {res.title}", ""]
        if res.error:
            lines += [f"Failed: `{res.error.splitlines()[0]}`", ""]
        if res.rows:
            lines.append(_md_table(
                ["system", "operation", "mode", "rate min / **median** / max", "unit", "p50", "p99", "cmds/op",
                 "reads/op", "note"],
                [[r.system, r.operation, r.mode, _rate(r, "**", "**"), r.unit,
                  fmt_us(r.p50_us) if r.p50_us else "-", fmt_us(r.p99_us) if r.p99_us else "-",
                  _server(r, "commands", 1), _server(r, "read_events", 2), r.note] for r in res.rows],
            ))
            lines.append("")
        for skip in res.skipped:
            lines.append(f"- skipped: {skip.what}: {' '.join(skip.reason.split())}")
        if res.skipped:
            lines.append("")
    lines += ["## Versions", "", _md_table(["component", "version"],
                                           [[k, str(v)] for k, v in payload["versions"].items()]), ""]
    return "\n".join(lines)


def _dist(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cmd(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def versions(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: _dist(name) for name in (
            "sessionfence", "redis", "hiredis", "pydantic", "orjson", "rq", "langgraph-checkpoint",
            "langgraph-checkpoint-postgres", "psycopg", "psycopg-binary", "psycopg-pool", "ormsgpack", "matplotlib",
        )
    }
    arq_python = ctx.peers_dir / "arq" / "bin" / "python"
    if arq_python.exists():
        out["arq (own venv)"] = _cmd([str(arq_python), "-c",
                                      "import arq, redis; print(arq.VERSION, 'redis-py', redis.__version__)"])
    node = shutil.which("node")
    out["node"] = _cmd([node, "--version"]) if node else None
    modules = ctx.peers_dir / "node" / "node_modules"
    for name in ("bullmq", "ioredis", "msgpackr"):
        out[name] = peers.node_package_version(modules / "bullmq", name)
    psql = shutil.which("psql")
    out["postgresql client"] = _cmd([psql, "--version"]) if psql else None
    return out


def write_outputs(payload: dict[str, Any], results: Sequence[CaseResult], out_dir: Path, plots: bool) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    summary = out_dir / "summary.md"
    summary.write_text(markdown_summary(payload, results), encoding="utf-8")
    written = [path, summary]
    if plots:
        try:
            from .plots import draw_all

            written += draw_all(results, out_dir)
        except ImportError as exc:
            console.print(f"[yellow]plots skipped: {exc} (install the bench extra for matplotlib)[/yellow]")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report RESULTS_JSON``: print the tables of a finished run and rewrite summary.md."""
    import sys

    from .suite import case_from_json

    args = list(sys.argv[1:] if argv is None else argv)
    source = Path(args[0])
    payload = json.loads(source.read_text(encoding="utf-8"))
    results = [case_from_json(c) for c in payload["cases"].values()]
    for result in results:
        print_case(result)
    print_summary(results)
    (source.parent / "summary.md").write_text(markdown_summary(payload, results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
