"""What every case of ``python -m benchmarks`` shares: its context, its result rows, ratios and skips.

A case is a function ``run(ctx) -> CaseResult``. It measures sessionfence and its peer in the same run (same
server, same time window, interleaved chunk by chunk or run by run) and reports absolute numbers as `Row`s and
the comparison as `Ratio`s. A peer that cannot be measured is a `Skip` with the exact reason, never dropped.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from .common import Sample, ServerHandle, ServerProbe, delete_prefix, summarize

__all__ = [
    "CaseResult", "Ctx", "Ratio", "Row", "Skip", "Stopwatch", "case_from_json", "paired", "rate_stats", "rotated",
    "row_from_samples",
]


@dataclass
class Ctx:
    """The run's settings and the shared Redis; ``prefix()`` hands out unique key prefixes (deleted at exit)."""

    server: ServerHandle
    quick: bool
    out_dir: Path
    repo_root: Path
    postgres_url: str
    peers_dir: Path
    runs: int | None = None  # --runs override
    prefixes: list[str] = field(default_factory=list)
    _admin: redis.Redis | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin(self) -> redis.Redis:
        if self._admin is None:
            self._admin = redis.Redis.from_url(self.url)
        return self._admin

    @property
    def probe(self) -> ServerProbe:
        return ServerProbe(self.admin)

    def prefix(self, label: str = "sfbench") -> str:
        value = f"{label}{secrets.token_hex(4)}"
        self.prefixes.append(value)
        return value

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def runs_or(self, default: int) -> int:
        return max(1, self.runs) if self.runs is not None else default

    def cleanup(self) -> None:
        for prefix in self.prefixes:
            delete_prefix(self.admin, prefix)
        self.prefixes.clear()

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


@dataclass
class Row:
    """One measured system doing one operation. ``rate`` is min/median/max (and every run) in ``unit``."""

    key: str
    system: str
    operation: str
    mode: str
    rate: dict[str, Any] | None = None
    unit: str = "ops/s"
    p50_us: float | None = None
    p99_us: float | None = None
    server: dict[str, float] | None = None  # commands / read_events / cpu_us per op, Redis side
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return None if self.rate is None else float(self.rate["median"])


@dataclass
class Ratio:
    """``numerator / denominator`` (medians of the same run); ``paired_*``: the range of run-by-run ratios."""

    name: str
    numerator: str
    denominator: str
    value: float | None
    target: float
    higher_is_better: bool = True
    paired_min: float | None = None
    paired_max: float | None = None
    note: str = ""
    headline: bool = True  # counted against the targets (False: context only)

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def target_text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}"


@dataclass
class Skip:
    what: str
    reason: str


@dataclass
class CaseResult:
    case: str
    title: str
    rows: list[Row] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    error: str | None = None

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def ratio(
        self,
        name: str,
        numerator: str,
        denominator: str,
        target: float,
        *,
        higher_is_better: bool = True,
        note: str = "",
        headline: bool = True,
    ) -> Ratio:
        """Add the ratio of two rows' medians (and the range of their run-by-run paired ratios)."""
        a, b = self.row(numerator), self.row(denominator)
        value = lo = hi = None
        if a is not None and b is not None and a.median and b.median:
            value = a.median / b.median
            pairs = paired(a.rate["all"] if a.rate else [], b.rate["all"] if b.rate else [])
            if pairs:
                lo, hi = min(pairs), max(pairs)
        ratio = Ratio(name, numerator, denominator, value, target, higher_is_better, lo, hi, note, headline)
        self.ratios.append(ratio)
        return ratio

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Run-by-run ratios of two cases measured in the same runs (same length), else []."""
    if len(a) != len(b) or not a:
        return []
    return [x / y for x, y in zip(a, b, strict=True) if y]


def rate_stats(values: Sequence[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "all": list(values)}


def row_from_samples(
    key: str, system: str, operation: str, mode: str, samples: Sequence[Sample], note: str = "", *,
    server: bool = True,
) -> Row:
    """A row from the timed samples of every run (`common.summarize`)."""
    s = summarize(samples)
    per_op = s.get("server_per_op") if server else None
    return Row(
        key=key,
        system=system,
        operation=operation,
        mode=mode,
        rate=s["ops_per_s"],
        p50_us=s["latency_us"]["p50"],
        p99_us=s["latency_us"]["p99"],
        server=(
            {k: per_op[k] for k in ("commands", "read_events", "cpu_us")} if per_op else None
        ),
        note=note,
        extra={
            "client_cpu_us_per_op": s.get("client_cpu_us_per_op"),
            "server_by_command": per_op.get("by_command") if per_op else None,
        },
    )


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def rotated(items: Sequence[Any], run: int) -> Iterator[Any]:
    """``items`` starting at position ``run`` (so each system goes first in some run)."""
    n = len(items)
    for index in range(n):
        yield items[(run + index) % n]


def case_from_json(data: dict[str, Any]) -> CaseResult:
    """A `CaseResult` back from ``results.json`` (to redraw plots or tables without re-running)."""
    return CaseResult(
        case=data["case"], title=data["title"], rows=[Row(**r) for r in data.get("rows", [])],
        ratios=[Ratio(**r) for r in data.get("ratios", [])], skipped=[Skip(**s) for s in data.get("skipped", [])],
        extra=data.get("extra", {}), elapsed_s=data.get("elapsed_s", 0.0), error=data.get("error"),
    )
