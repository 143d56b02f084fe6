"""PNG plots of a suite run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .suite import CaseResult, Row

__all__ = ["draw_all"]

SF = "#1f6fb4"
PEER = "#9a9a9a"
GOOD = "#2e8b57"
BAD = "#c0392b"


def _is_sf(row: Row) -> bool:
    return row.system.startswith("sessionfence")


def _label(row: Row) -> str:
    head = row.operation if row.operation.startswith(row.system) else f"{row.system}: {row.operation}"
    text = textwrap.fill(head, 48)
    return f"{text}\n{textwrap.shorten(row.mode, 48)}"


def _bars(ax: Any, rows: Sequence[Row], unit: str, title: str) -> None:
    rows = [r for r in rows if r.rate is not None]
    ys = list(range(len(rows)))[::-1]
    med = [r.rate["median"] for r in rows]  # type: ignore[index]
    lo = [m - r.rate["min"] for m, r in zip(med, rows, strict=True)]  # type: ignore[index]
    hi = [r.rate["max"] - m for m, r in zip(med, rows, strict=True)]  # type: ignore[index]
    colors = [SF if _is_sf(r) else PEER for r in rows]
    ax.barh(ys, med, xerr=[lo, hi], color=colors, capsize=3, error_kw={"elinewidth": 1})
    ax.set_yticks(ys, [_label(r) for r in rows], fontsize=7)
    for y, m, h in zip(ys, med, hi, strict=True):
        ax.text(m + h, y, f"  {m:,.0f}" if m >= 100 else f"  {m:,.1f}", va="center", fontsize=7)
    ax.set_xlim(right=max(m + h for m, h in zip(med, hi, strict=True)) * 1.15)
    ax.set_xlabel(f"{unit} (median of runs; whiskers min-max)")
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(axis="x", alpha=0.3)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ratios_plot(results: Sequence[CaseResult], path: Path) -> Path | None:
    items = [(res.case, r) for res in results for r in res.ratios if r.headline]
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(12, 0.42 * len(items) + 1.4))
    ys = list(range(len(items)))[::-1]
    scores = [1.0]
    for y, (_case, r) in zip(ys, items, strict=True):
        if r.value is None:
            ax.text(1.0, y, "  skipped", va="center", fontsize=7, color=PEER)
            continue
        score = r.value / r.target if r.higher_is_better else r.target / r.value
        scores.append(score)
        ax.barh(y, score, color=GOOD if r.met else BAD)
        ax.text(score, y, f" {r.value:.2f} (target {r.target_text()})", va="center", fontsize=7)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(min(scores) * 0.5, max(scores) * 6)
    ax.set_yticks(ys, [f"[{case}] {r.name}" for case, r in items], fontsize=7)
    ax.set_xlabel("ratio / target (for latency and memory: target / ratio); right of the line = target met",
                  fontsize=8)
    ax.set_title("sessionfence against its peers: every headline ratio of the run", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3, which="both")
    return _save(fig, path)


def grouped_plot(result: CaseResult, path: Path, groups: Sequence[tuple[str, str, Any]]) -> Path | None:
    """One panel per ``(title, unit, predicate(row))`` group, stacked, sized by row count."""
    panels = [(title, unit, [r for r in result.rows if r.rate and pred(r)]) for title, unit, pred in groups]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    sizes = [len(rows) for _t, _u, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10.5, 0.55 * sum(sizes) + 1.4 * len(panels)),
                             gridspec_kw={"height_ratios": sizes}, squeeze=False)
    for ax, (title, unit, rows) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, rows, unit, title)
    return _save(fig, path)


def scaling_plot(result: CaseResult, path: Path) -> Path | None:
    rows = {r.key: r for r in result.rows}
    commits = sorted((r for r in result.rows if r.key.startswith("commit_")), key=lambda r: int(r.key.split("_")[1]))
    if not commits:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0][0]
    sizes = [int(r.key.split("_")[1]) for r in commits]
    ax.plot(sizes, [r.p50_us / 1e3 for r in commits], "o-", color=SF, label="p50")  # type: ignore[operator]
    ax.plot(sizes, [r.p99_us / 1e3 for r in commits], "s--", color=SF, alpha=0.6, label="p99")  # type: ignore[operator]
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("nodes already in the session's graph")
    ax.set_ylabel("ms per commit")
    ax.set_title("Commit latency (10-node turn) vs graph size", fontsize=9, loc="left")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax = axes[0][1]
    paths = sorted((r for r in result.rows if r.key.startswith("path_")), key=lambda r: int(r.key.split("_")[1]))
    if paths:
        lengths = [int(r.key.split("_")[1]) for r in paths]
        ax.plot(lengths, [r.p50_us / 1e3 for r in paths], "o-", color=SF, label="p50")  # type: ignore[operator]
        ax.plot(lengths, [r.p99_us / 1e3 for r in paths], "s--", color=SF, alpha=0.6, label="p99")  # type: ignore[operator]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes on the active path")
        ax.set_ylabel("ms per load")
        ax.set_title("load_session(ActivePath) latency vs path length", fontsize=9, loc="left")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    ax = axes[1][0]
    fulls = sorted((r for r in result.rows if r.key.startswith("full_")), key=lambda r: int(r.key.split("_")[1]))
    if fulls:
        labels = [r.mode.replace("graph of ", "") for r in fulls]
        ax.bar(labels, [r.rate["median"] for r in fulls], color=SF)  # type: ignore[index]
        ax.set_ylabel("nodes/s")
        ax.set_title("load_session(FullGraph) throughput", fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[1][1]
    claims = [rows[k] for k in ("claim_100", "claim_100000") if k in rows]
    if claims:
        labels = [r.mode for r in claims]
        ax.bar(labels, [r.p50_us for r in claims], color=SF, label="p50")  # type: ignore[misc]
        ax.scatter(labels, [r.p99_us for r in claims], color="black", marker="_", s=400, label="p99", zorder=3)
        ax.set_ylabel("µs per claim")
        ax.set_title("claim_ready_queued_work vs queue depth", fontsize=9, loc="left")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(result.title, fontsize=10)
    return _save(fig, path)


def fleet_plot(result: CaseResult, path: Path) -> Path | None:
    series: dict[str, list[tuple[int, float]]] = {}
    for r in result.rows:
        if r.rate is None:
            continue
        workers = int(r.mode.split()[0])
        series.setdefault(r.operation, []).append((workers, r.rate["median"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
        for x, y in points:
            ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("worker processes (2 vCPUs, shared with Redis and the producer)")
    ax.set_ylabel("committed turns/s")
    ax.set_title(result.title, fontsize=9, loc="left")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def memory_plot(result: CaseResult, path: Path) -> Path | None:
    rows = [r for r in result.rows if "payload_bytes" in r.extra]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.8))
    labels = [f"{r.system}\n{r.operation}" for r in rows]
    payload = [r.extra["payload_bytes"] / r.extra["count"] for r in rows]
    usage = [r.extra["memory_usage_bytes"] / r.extra["count"] for r in rows]
    overhead = [u - p for u, p in zip(usage, payload, strict=True)]
    ys = list(range(len(rows)))[::-1]
    ax.barh(ys, payload, color=PEER, label="payload bytes")
    ax.barh(ys, overhead, left=payload, color=SF, label="overhead (MEMORY USAGE minus payload)")
    for y, u, r in zip(ys, usage, rows, strict=True):
        ax.text(u, y, f" {u:.0f} B ({r.extra['ratio_memory_usage']:.2f}x)", va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel("bytes per stored item")
    ax.set_title(result.title, fontsize=9, loc="left")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def draw_all(results: Sequence[CaseResult], out_dir: Path) -> list[Path]:
    by_case = {r.case: r for r in results}
    drawn: list[Path | None] = [ratios_plot(results, out_dir / "ratios.png")]
    if "commit" in by_case:
        drawn.append(grouped_plot(by_case["commit"], out_dir / "commit.png", [
            ("Turn commit, sync, 1 connection", "commits/s", lambda r: r.mode.startswith("sync")),
            ("Turn commit, asyncio", "commits/s", lambda r: r.mode.startswith("asyncio")),
        ]))
    if "lease" in by_case:
        drawn.append(grouped_plot(by_case["lease"], out_dir / "lease.png", [
            ("Acquire + release, sync, 1 connection", "cycles/s", lambda r: r.key.endswith("_sync")),
            ("Acquire + release, asyncio, 1 connection", "cycles/s", lambda r: r.key.endswith("_async")),
        ]))
    if "queue" in by_case:
        drawn.append(grouped_plot(by_case["queue"], out_dir / "queue.png", [
            ("Drain N no-op jobs, one fresh worker process (start-up included)", "jobs/s",
             lambda r: not r.key.startswith("enqueue")),
            ("Enqueue, one at a time, each awaited", "jobs/s", lambda r: r.key.startswith("enqueue")),
        ]))
    if "checkpoint" in by_case:
        drawn.append(grouped_plot(by_case["checkpoint"], out_dir / "checkpoint.png", [
            ("Save a turn (10 messages of ~300 B + checkpoint)", "saves/s", lambda r: "save" in r.key),
            ("Load the latest state", "loads/s", lambda r: "load" in r.key),
        ]))
    if "scaling" in by_case:
        drawn.append(scaling_plot(by_case["scaling"], out_dir / "scaling.png"))
    if "fleet" in by_case:
        drawn.append(fleet_plot(by_case["fleet"], out_dir / "fleet.png"))
    if "memory" in by_case:
        drawn.append(memory_plot(by_case["memory"], out_dir / "memory.png"))
    return [p for p in drawn if p is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.plots RESULTS_JSON [OUT_DIR]``: redraw the plots of a finished run."""
    import json
    import sys

    from .suite import case_from_json

    args = list(sys.argv[1:] if argv is None else argv)
    source = Path(args[0])
    out_dir = Path(args[1]) if len(args) > 1 else source.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = json.loads(source.read_text(encoding="utf-8"))
    results = [case_from_json(c) for c in payload["cases"].values()]
    for drawn in draw_all(results, out_dir):
        print(drawn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
