"""Reading the workers' JSONL event logs (incrementally for the live display, fully for verification)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["CommittedEvent", "WorkerLogs"]

STALE_KINDS = ("SessionExecutionLeaseExpired", "QueuedWorkClaimExpired", "HeadRevisionConflict")


@dataclass(frozen=True)
class CommittedEvent:
    owner: str
    sid: str
    rev: int
    claim_id: str
    lease_fence: int
    batches: int
    items: int


@dataclass
class WorkerLogs:
    """Aggregates every worker log under one directory; `poll()` reads what was appended since the last call."""

    log_dir: Path
    committed: list[CommittedEvent] = field(default_factory=list)
    not_committed: list[dict[str, Any]] = field(default_factory=list)  # refused / lost / failed turns
    outcomes: Counter[str] = field(default_factory=Counter)  # "refused:<kind>", "lost:<kind>", "failed"
    crashes: list[str] = field(default_factory=list)
    log_lines: Counter[str] = field(default_factory=Counter)  # coarse categories of the runtime's own logs
    starts: int = 0
    exits: int = 0
    bad_lines: int = 0
    _offsets: dict[Path, int] = field(default_factory=dict)
    _owners: dict[Path, str] = field(default_factory=dict)
    _stats: dict[Path, dict[str, Any]] = field(default_factory=dict)

    def poll(self, final: bool = False) -> None:
        if not self.log_dir.is_dir():
            return
        for path in sorted(self.log_dir.glob("worker-*.jsonl")):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            if final and end < len(data):
                self.bad_lines += 1  # a line cut short by SIGKILL
            self._offsets[path] = offset + end
            for line in data[:end].splitlines():
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.bad_lines += 1
                    continue
                if isinstance(event, dict):
                    self._apply(path, event)

    def _apply(self, path: Path, e: dict[str, Any]) -> None:
        ev = e.get("ev")
        owner = self._owners.get(path, path.stem.removeprefix("worker-"))
        if ev == "committed":
            self.committed.append(
                CommittedEvent(
                    owner=owner,
                    sid=str(e["sid"]),
                    rev=int(e["rev"]),
                    claim_id=str(e["claim_id"]),
                    lease_fence=int(e["lease_fence"]),
                    batches=int(e["batches"]),
                    items=int(e["items"]),
                )
            )
        elif ev in ("refused", "lost"):
            kind = str(e.get("kind") or "unknown")
            self.outcomes[f"{ev}:{kind}"] += 1
            self.not_committed.append({**e, "owner": owner})
        elif ev == "failed":
            self.outcomes["failed"] += 1
            self.not_committed.append({**e, "owner": owner})
        elif ev == "log":
            self.log_lines[_categorize(str(e.get("msg", "")))] += 1
        elif ev == "stats":
            self._stats[path] = e
        elif ev == "crash":
            self.crashes.append(f"{owner}: {e.get('error')}")
        elif ev == "start":
            self.starts += 1
            self._owners[path] = str(e.get("owner", owner))
        elif ev == "exit":
            self.exits += 1

    # -- aggregates ----------------------------------------------------------------------------------------
    @property
    def turns(self) -> int:
        return len(self.committed)

    @property
    def acked_batches(self) -> int:
        return sum(c.batches for c in self.committed)

    @property
    def acked_items(self) -> int:
        return sum(c.items for c in self.committed)

    def counter(self, name: str) -> int:
        """Sum of one metrics-hook counter over every incarnation's last stats line."""
        return sum(int(s.get("counts", {}).get(name, 0)) for s in self._stats.values())

    def counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for s in self._stats.values():
            total.update({k: int(v) for k, v in s.get("counts", {}).items()})
        return total

    def refused(self) -> Counter[str]:
        """Commits refused, by error kind (stale fence, stale claim, revision conflict)."""
        return Counter({k.split(":", 1)[1]: v for k, v in self.outcomes.items() if k.startswith("refused:")})

    def lost(self) -> Counter[str]:
        """Turns abandoned before committing (a renewal or the work claim was refused), by error kind."""
        return Counter({k.split(":", 1)[1]: v for k, v in self.outcomes.items() if k.startswith("lost:")})

    def stale_refusals(self) -> int:
        """Writes the store refused because they came from a stale lease, claim or revision."""
        return sum(v for k, v in self.refused().items() if k in STALE_KINDS) + sum(
            v for k, v in self.lost().items() if k in STALE_KINDS
        )


def _categorize(msg: str) -> str:
    if "retrying as a replay" in msg:
        return "commit_retry"
    if "refused" in msg:
        return "refused"
    if "lost mid-turn" in msg:
        return "lost"
    if "failed" in msg:
        return "connection" if ("Connection" in msg or "Timeout" in msg or "unavailable" in msg) else "failed"
    return "other"
