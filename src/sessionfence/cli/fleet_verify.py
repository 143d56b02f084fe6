"""Verification of a `sessionfence fleet` run, from Redis (and, when given, the workers' logs).

`verify_fleet(client, prefix)` works on any existing run prefix: the producer's record of what it enqueued and
cancelled lives under the prefix, and every committed turn records in its history node what it acked. Checked:

1. every distinct enqueued batch was acked by exactly one committed turn, or was cancelled and acked by none;
   no turn acked a batch that was never enqueued; items acked are exactly the batch's items;
2. per session: the history is a valid tree (unique ids, parents exist and precede children, exactly one root),
   made of fleet turns each extending the previous one; head_revision equals the turns found, turn k says it
   committed revision k; graph_node_count and the leaf match;
3. no commit from a stale fence: the lease fencing tokens of successive turns strictly increase;
4. claims respect the queue contract: an EXCLUSIVE batch alone, a JOIN group of one delivery policy and merge
   key, queue order, at most max_batches, nothing claimed before it was due;
5. a re-submitted source key made a new batch only after the first one was acked;
6. ledger: per session the merged ledger equals the usage the turns reported, the checkpoint's running totals
   agree, and the grand total equals what the enqueued items imply;
7. queues are empty after the drain;
8. from worker logs: every turn a worker logged as committed is in Redis at that revision with that claim and
   fencing token; no turn a worker logged as refused or lost is in Redis.

Refused stale writes are expected under faults and are counted, never violations.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..models import FullGraph, SessionNodeRecord, TokenUsage
from ..store import AsyncRedisStoreFactory
from .fleet_logs import WorkerLogs
from .fleet_sim import LEDGER_MODEL, LEDGER_SOURCE, TURN_PLUGIN, fleet_key, usage_for

__all__ = ["SessionSummary", "Verification", "verify_fleet"]

USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")


@dataclass
class SessionSummary:
    session_id: str
    head_revision: int
    turns: int
    batches: int
    items: int
    nodes: int
    max_lease_fence: int
    queued: int
    usage: dict[str, int]


@dataclass
class Verification:
    prefix: str
    violations: list[str] = field(default_factory=list)
    sessions: list[SessionSummary] = field(default_factory=list)
    distinct_batches: int = 0
    cancelled: int = 0
    acked_batches: int = 0
    acked_items: int = 0
    committed_turns: int = 0
    coalesced_turns: int = 0
    repeats_checked: int = 0
    queued_left: int = 0
    usage_total: dict[str, int] = field(default_factory=dict)
    log_committed: int = 0
    log_checked: bool = False
    truncated: int = 0
    max_violations: int = 200

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, text: str) -> None:
        if len(self.violations) < self.max_violations:
            self.violations.append(text)
        else:
            self.truncated += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": self.violations + ([f"... and {self.truncated} more"] if self.truncated else []),
            "distinct_batches": self.distinct_batches,
            "cancelled": self.cancelled,
            "acked_batches": self.acked_batches,
            "acked_items": self.acked_items,
            "committed_turns": self.committed_turns,
            "coalesced_turns": self.coalesced_turns,
            "repeats_checked": self.repeats_checked,
            "queued_left": self.queued_left,
            "usage_total": self.usage_total,
            "worker_log_committed_events": self.log_committed,
            "worker_logs_checked": self.log_checked,
            "sessions": [vars(s) for s in self.sessions],
        }


@dataclass
class _Turn:
    rev: int
    node: SessionNodeRecord
    body: dict[str, Any]


def _usage_dict(u: TokenUsage) -> dict[str, int]:
    return {f: int(getattr(u, f)) for f in USAGE_FIELDS}


def _is_reply(node: SessionNodeRecord, turn: SessionNodeRecord) -> bool:
    extra = node.model_extra or {}
    event = extra.get("event")
    return (
        node.parent_node_id == turn.node_id
        and extra.get("kind") == "event"
        and isinstance(event, dict)
        and isinstance(event.get("Conversation"), dict)
        and event["Conversation"].get("role") == "Assistant"
    )


async def _load_run(client: Any, prefix: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], set[str]]:
    run_raw = await client.hgetall(fleet_key(prefix, "run"))
    run = {k.decode(): orjson.loads(v) for k, v in run_raw.items()}
    batches_raw = await client.hgetall(fleet_key(prefix, "batches"))
    batches = {k.decode(): orjson.loads(v) for k, v in batches_raw.items()}
    cancelled = {m.decode() for m in await client.smembers(fleet_key(prefix, "cancelled"))}
    return run, batches, cancelled


async def verify_fleet(
    client: Any,
    prefix: str,
    *,
    log_dir: Path | None = None,
    expect_drained: bool = True,
) -> Verification:
    """Check every invariant of a fleet run stored under `prefix` (see the module docstring)."""
    v = Verification(prefix)
    run, manifest, cancelled = await _load_run(client, prefix)
    if not run:
        v.add(f"no fleet run is recorded under prefix {prefix!r}")
        return v
    sessions: list[str] = list(run.get("sessions", []))
    max_batches = int(run.get("settings", {}).get("max_batches", 8))
    v.distinct_batches = len(manifest)
    v.cancelled = len(cancelled)
    for text in await client.lrange(fleet_key(prefix, "violations"), 0, -1):
        v.add(f"producer: {text.decode()}")
    factory = AsyncRedisStoreFactory(client, key_prefix=prefix)

    acked_in: dict[str, list[tuple[str, int, int]]] = defaultdict(
        list
    )  # batch -> [(session, rev, claimed_at)]
    turns_by_session: dict[str, dict[int, _Turn]] = {}
    queued_by_session: dict[str, set[str]] = {}
    grand = Counter[str]()

    for sid in sessions:
        store = factory.store(sid)
        head = await store.load_session_head_meta()
        read = await store.load_session(FullGraph())
        queued = await store.list_queued_work(sid)
        queued_by_session[sid] = {b.batch_id for b in queued}
        v.queued_left += len(queued)
        if queued and expect_drained:
            ids = ", ".join(b.batch_id[:16] for b in queued[:3])
            v.add(f"undrained: {sid} still holds {len(queued)} queued batch(es) ({ids}...)")
        nodes = read.graph.nodes if read is not None else []
        head_rev = read.head_revision if read is not None else 0
        # -- the history is a valid tree ---------------------------------------------------------------
        seen: set[str] = set()
        roots = 0
        for node in nodes:
            if node.node_id in seen:
                v.add(f"{sid}: node id {node.node_id} appears twice")
            if node.parent_node_id is None:
                roots += 1
            elif node.parent_node_id not in seen:
                v.add(
                    f"{sid}: node {node.node_id} has a parent {node.parent_node_id} that does not precede it"
                )
            seen.add(node.node_id)
        if nodes and roots != 1:
            v.add(f"{sid}: history has {roots} roots, expected exactly one")
        if head is not None and head.graph_node_count != len(nodes):
            v.add(f"{sid}: head says {head.graph_node_count} nodes, the graph has {len(nodes)}")
        # -- the history is a chain of fleet turns ------------------------------------------------------
        turns: dict[int, _Turn] = {}
        prev_leaf: str | None = None
        prev_fence = 0
        i = 0
        usage_sum = TokenUsage()
        items_sum = batches_sum = 0
        while i < len(nodes):
            node = nodes[i]
            extra = node.model_extra or {}
            if extra.get("kind") != "plugin" or extra.get("plugin_type") != TURN_PLUGIN:
                v.add(f"{sid}: node {node.node_id} at position {i} is not a fleet turn (foreign commit)")
                i += 1
                continue
            body = extra.get("body")
            if not isinstance(body, dict):
                v.add(f"{sid}: turn node {node.node_id} has no body")
                i += 1
                continue
            k = len(turns) + 1
            rev = int(body.get("rev", -1))
            if rev != k:
                v.add(f"{sid}: turn #{k} ({node.node_id}) says it committed revision {rev}")
            if node.parent_node_id != prev_leaf:
                v.add(f"{sid}: turn #{k} does not extend the previous leaf {prev_leaf}")
            reply = nodes[i + 1] if i + 1 < len(nodes) else None
            if reply is None or not _is_reply(reply, node):
                v.add(f"{sid}: turn #{k} ({node.node_id}) is not followed by its reply")
                prev_leaf = node.node_id
                i += 1
            else:
                prev_leaf = reply.node_id
                i += 2
            turns[k] = _Turn(k, node, body)
            # fences: a later turn must hold a newer lease
            fence = int(body.get("lease_fence", 0))
            if fence <= prev_fence:
                v.add(
                    f"{sid}: turn #{k} committed under fencing token {fence} after a turn under {prev_fence}"
                )
            prev_fence = max(prev_fence, fence)
            # the claim
            claim_id = str(body.get("claim_id", ""))
            if node.node_id != f"{claim_id}/turn":
                v.add(f"{sid}: turn node {node.node_id} does not name its claim {claim_id}")
            blist = body.get("batches") or []
            if not blist:
                v.add(f"{sid}: turn #{k} acked no batch")
            if len(blist) > max_batches:
                v.add(f"{sid}: turn #{k} claimed {len(blist)} batches (max_batches {max_batches})")
            if blist and claim_id != f"qwc:{blist[0].get('seq')}:{body.get('claim_fence')}":
                v.add(f"{sid}: turn #{k} claim id {claim_id} does not derive from its first batch")
            seqs = [int(b.get("seq", 0)) for b in blist]
            if seqs != sorted(set(seqs)):
                v.add(f"{sid}: turn #{k} batches are not in queue order: {seqs}")
            slots = {b.get("slot") for b in blist}
            if "exclusive" in slots and len(blist) != 1:
                v.add(f"{sid}: turn #{k} claimed an EXCLUSIVE batch together with {len(blist) - 1} other(s)")
            if len(blist) > 1:
                v.coalesced_turns += 1
                groups = {(b.get("delivery"), orjson.dumps(b.get("merge"))) for b in blist}
                if len(groups) != 1:
                    v.add(f"{sid}: turn #{k} joined batches of different delivery policies or merge keys")
            claimed_at = int(body.get("claimed_at_ms", 0))
            n_items = 0
            for b in blist:
                bid = str(b.get("id"))
                items = list(b.get("items") or [])
                n_items += len(items)
                acked_in[bid].append((sid, k, claimed_at))
                info = manifest.get(bid)
                if info is None:
                    v.add(f"{sid}: turn #{k} acked batch {bid}, which the producer never enqueued")
                    continue
                if info["sid"] != sid:
                    v.add(f"{sid}: turn #{k} acked batch {bid} of session {info['sid']}")
                if items != [f"{bid}:item:{j}" for j in range(int(info["items"]))]:
                    v.add(
                        f"{sid}: turn #{k} acked items {items} of batch {bid}, expected {info['items']} item(s)"
                    )
                for key in ("slot", "delivery", "merge", "available_at_ms"):
                    if b.get(key) != info.get(key):
                        v.add(
                            f"{sid}: turn #{k} saw batch {bid} with {key}={b.get(key)!r}, enqueued {info.get(key)!r}"
                        )
                if claimed_at < int(info.get("available_at_ms", 0)):
                    v.add(f"{sid}: turn #{k} claimed batch {bid} at {claimed_at}, before it was due")
            usage = usage_for(len(blist), n_items)
            if body.get("usage") != usage.to_wire():
                v.add(f"{sid}: turn #{k} reported usage {body.get('usage')}, expected {usage.to_wire()}")
            usage_sum = TokenUsage(*(getattr(usage_sum, f) + getattr(usage, f) for f in USAGE_FIELDS))
            items_sum += n_items
            batches_sum += len(blist)
        turns_by_session[sid] = turns
        if head_rev != len(turns):
            v.add(f"{sid}: head_revision is {head_rev} but the history holds {len(turns)} committed turn(s)")
        if head is not None and nodes and head.leaf_node_id != nodes[-1].node_id:
            v.add(f"{sid}: head leaf {head.leaf_node_id} is not the last reply {nodes[-1].node_id}")
        # -- ledger and checkpoint ---------------------------------------------------------------------
        ledger = read.token_ledger if read is not None else []
        expected_ledger = [] if not turns else [(LEDGER_SOURCE, LEDGER_MODEL, _usage_dict(usage_sum))]
        got_ledger = [(e.source, e.model, _usage_dict(e.usage)) for e in ledger]
        if got_ledger != expected_ledger:
            v.add(f"{sid}: ledger {got_ledger} differs from the usage the turns reported {expected_ledger}")
        if read is not None and turns:
            cp = read.checkpoint
            if cp is None:
                v.add(f"{sid}: the head has no checkpoint")
            else:
                if cp.turn_state.turn_index != head_rev:
                    v.add(
                        f"{sid}: checkpoint turn_index {cp.turn_state.turn_index} != head_revision {head_rev}"
                    )
                if _usage_dict(cp.turn_state.token_usage) != _usage_dict(usage_sum):
                    v.add(f"{sid}: checkpoint running usage differs from the ledger")
                tools = (
                    (cp.tool_state or {}).get("tools", {}).get("fleet", {})
                    if isinstance(cp.tool_state, dict)
                    else {}
                )
                if tools.get("items") != items_sum or tools.get("batches") != batches_sum:
                    v.add(f"{sid}: checkpoint counts {tools} differ from the history ({items_sum} items)")
        grand.update(_usage_dict(usage_sum))
        v.committed_turns += len(turns)
        v.sessions.append(
            SessionSummary(
                session_id=sid,
                head_revision=head_rev,
                turns=len(turns),
                batches=batches_sum,
                items=items_sum,
                nodes=len(nodes),
                max_lease_fence=prev_fence,
                queued=len(queued),
                usage=_usage_dict(usage_sum),
            )
        )

    # -- exactly once ------------------------------------------------------------------------------------
    known_sessions = set(sessions)
    expected_items = 0
    for bid, info in manifest.items():
        hits = acked_in.get(bid, [])
        if info["sid"] not in known_sessions:
            v.add(f"batch {bid} was enqueued into unknown session {info['sid']}")
            continue
        if bid in cancelled:
            if hits:
                v.add(f"batch {bid} was cancelled but acked by turn(s) {hits}")
            if bid in queued_by_session[info["sid"]]:
                v.add(f"batch {bid} was cancelled but is still queued")
            continue
        if len(hits) == 1:
            v.acked_batches += 1
            v.acked_items += int(info["items"])
            expected_items += int(info["items"])
        elif len(hits) > 1:
            v.add(f"batch {bid} was acked {len(hits)} times: {[(s, r) for s, r, _ in hits]}")
        elif bid not in queued_by_session[info["sid"]]:
            v.add(f"batch {bid} ({info['kind']} in {info['sid']}) is gone without being acked or cancelled")
    v.usage_total = dict(grand)
    if grand["input_tokens"] != 10 * expected_items:
        v.add(f"ledger input tokens total {grand['input_tokens']} != 10 x {expected_items} items acked")
    # -- dedup: a repeat made a new batch only after the first was acked -----------------------------------
    for raw in await client.lrange(fleet_key(prefix, "repeats"), 0, -1):
        rep = orjson.loads(raw)
        v.repeats_checked += 1
        prev, enqueued_at = rep["previous"], int(rep["enqueued_at_ms"])
        if prev in cancelled:
            continue
        hits = acked_in.get(prev, [])
        if not hits:
            v.add(
                f"source key {rep['source_key']!r} made new batch {rep['new']} while {prev} was never acked"
            )
        elif min(h[2] for h in hits) > enqueued_at:
            v.add(
                f"source key {rep['source_key']!r} made new batch {rep['new']} at {enqueued_at} while {prev} "
                f"was still stored (claimed only at {min(h[2] for h in hits)})"
            )
    # -- worker logs agree with Redis -----------------------------------------------------------------------
    if log_dir is not None and log_dir.is_dir():
        logs = WorkerLogs(log_dir)
        logs.poll(final=True)
        v.log_checked = True
        v.log_committed = len(logs.committed)
        # claim ids are unique within a session (they embed its enqueue sequence), not across sessions
        claims_in_redis = {
            (sid, str(t.body.get("claim_id"))) for sid, ts in turns_by_session.items() for t in ts.values()
        }
        for c in logs.committed:
            turn = turns_by_session.get(c.sid, {}).get(c.rev)
            if turn is None:
                v.add(f"{c.owner} logged a commit of {c.sid} revision {c.rev} that Redis does not hold")
            elif (
                turn.body.get("claim_id") != c.claim_id
                or int(turn.body.get("lease_fence", -1)) != c.lease_fence
            ):
                v.add(
                    f"{c.owner} logged {c.sid} revision {c.rev} as claim {c.claim_id} (fence {c.lease_fence}); "
                    f"Redis has {turn.body.get('claim_id')} (fence {turn.body.get('lease_fence')})"
                )
        for e in logs.not_committed:
            claim = e.get("claim_id")
            if claim and (str(e.get("sid")), claim) in claims_in_redis:
                v.add(
                    f"{e['owner']} logged claim {claim} of {e.get('sid')} as {e.get('ev')} ({e.get('kind')}) "
                    "but Redis committed it"
                )
    return v
