"""The simulated agent turn of `sessionfence fleet`, and the record format the verifier reads back.

A committed turn appends two nodes to the session's history: a plugin node whose body records everything the
verifier needs (the claim, every batch and item acked, the fencing token of the lease, the usage reported),
and an assistant reply below it. Usage is a pure function of the claim, so ledger totals can be recomputed
from the producer's own record of what it enqueued. Nothing here does I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import (
    GraphAppend,
    HydratedSessionCheckpoint,
    PersistedSessionConfig,
    PersistedTurnState,
    QueuedWorkClaim,
    SessionNodeRecord,
    TokenLedgerEntry,
    TokenUsage,
)
from ..worker import TurnContext, TurnResult

__all__ = [
    "FLEET_TAG",
    "LEDGER_MODEL",
    "LEDGER_SOURCE",
    "TURN_PLUGIN",
    "fleet_key",
    "simulate_turn",
    "usage_for",
]

TURN_PLUGIN = "sessionfence.fleet.turn"
LEDGER_SOURCE = "fleet"
LEDGER_MODEL = "fleet-sim"
CONFIG = PersistedSessionConfig("fleet", {"id": LEDGER_MODEL})
# The run's own bookkeeping (what the producer enqueued and cancelled) lives beside the factory index, under
# the run's unique key prefix, so `verify_fleet(url, prefix)` needs nothing but Redis.
FLEET_TAG = "__fleet__"


def fleet_key(prefix: str, part: str) -> str:
    return f"{prefix}:{{{FLEET_TAG}}}:{part}"


def usage_for(batches: int, items: int) -> TokenUsage:
    """What a turn reports: deterministic from what it acked, so totals are checkable from the enqueue record."""
    return TokenUsage(10 * items, 3 * items + batches, items, batches)


def add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cached_input_tokens + b.cached_input_tokens,
        a.reasoning_tokens + b.reasoning_tokens,
    )


def turn_body(ctx: TurnContext, usage: TokenUsage) -> dict[str, Any]:
    claim: QueuedWorkClaim = ctx.claim
    return {
        "rev": ctx.head_revision + 1,
        "owner": ctx.owner_id,
        "lease_fence": ctx.lease.fencing_token,
        "claim_id": claim.claim_id,
        "claim_fence": claim.fencing_token,
        "claimed_at_ms": claim.claimed_at_epoch_ms,
        "batches": [
            {
                "id": b.batch_id,
                "seq": b.enqueue_seq,
                "slot": b.slot_policy.value,
                "delivery": b.delivery_policy.value,
                "merge": b.merge_key.to_wire(),
                "available_at_ms": b.available_at_ms,
                "items": [item.item_id for item in b.items],
            }
            for b in claim.batches
        ],
        "usage": usage.to_wire(),
    }


def simulate_turn(ctx: TurnContext) -> TurnResult:
    """Append a turn record and a reply, advance the checkpoint, report usage for what was acked."""
    claim = ctx.claim
    n_batches = len(claim.batches)
    n_items = sum(len(b.items) for b in claim.batches)
    usage = usage_for(n_batches, n_items)
    rev = ctx.head_revision + 1
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    turn = SessionNodeRecord.model_validate(
        {
            "node_id": f"{claim.claim_id}/turn",
            "parent_node_id": ctx.leaf_node_id,
            "timestamp": now,
            "kind": "plugin",
            "plugin_type": TURN_PLUGIN,
            "body": turn_body(ctx, usage),
        }
    )
    reply_id = f"{claim.claim_id}/reply"
    reply = SessionNodeRecord.model_validate(
        {
            "node_id": reply_id,
            "parent_node_id": turn.node_id,
            "timestamp": now,
            "kind": "event",
            "event": {
                "Conversation": {
                    "id": f"msg-{reply_id}",
                    "role": "Assistant",
                    "parts": [
                        {
                            "id": f"part-{reply_id}",
                            "kind": "Text",
                            "content": f"turn {rev}: handled {n_items} item(s) from {n_batches} batch(es)",
                            "prune_state": "Intact",
                        }
                    ],
                }
            },
        }
    )
    prev = ctx.session.checkpoint if ctx.session is not None else None
    prev_usage = prev.turn_state.token_usage if prev is not None else TokenUsage()
    prev_tools: dict[str, Any] = {}
    if prev is not None and isinstance(prev.tool_state, dict):
        found = prev.tool_state.get("tools", {}).get("fleet", {})
        prev_tools = found if isinstance(found, dict) else {}
    checkpoint = HydratedSessionCheckpoint(
        turn_state=PersistedTurnState(turn_index=rev, token_usage=add_usage(prev_usage, usage)),
        tool_state={
            "generation": rev,
            "tools": {
                "fleet": {
                    "items": int(prev_tools.get("items", 0)) + n_items,
                    "batches": int(prev_tools.get("batches", 0)) + n_batches,
                }
            },
        },
    )
    return TurnResult(
        graph=GraphAppend([turn, reply], reply_id),
        checkpoint=checkpoint,
        usage_deltas=[TokenLedgerEntry(LEDGER_SOURCE, LEDGER_MODEL, usage)],
        config=CONFIG,
    )
