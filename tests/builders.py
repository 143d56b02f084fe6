"""Test-only builders for the notation of contract §3.0 (pure: no I/O).

``minimal(sid, **changes)`` is the commit every scenario starts from; checkpoint fields can be changed with
the shortcuts in ``CHECKPOINT_SHORTCUTS`` and ``TURN_STATE_SHORTCUTS`` (``turn_index=1`` means
``checkpoint.turn_state.turn_index=1``).
"""

from __future__ import annotations

from typing import Any

from sessionfence.models import (
    DeliveryPolicy,
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    MergeKey,
    PersistedSessionConfig,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    RuntimeCommit,
    SessionExecutionLease,
    SessionGraph,
    SessionNodeRecord,
    SlotPolicy,
)

__all__ = [
    "CHECKPOINT_SHORTCUTS",
    "TURN_STATE_SHORTCUTS",
    "Clock",
    "draft",
    "leased",
    "minimal",
    "minimal_commit",
    "node",
    "text",
    "turn_input",
]

# Keyword -> HydratedSessionCheckpoint field; ``turn_index`` and ``token_usage`` go one level deeper.
CHECKPOINT_SHORTCUTS = frozenset(
    {
        "tool_state",
        "tool_state_ref",
        "plugin_snapshot",
        "plugin_snapshot_ref",
        "plugin_snapshot_revision",
        "execution_state",
        "execution_state_ref",
    }
)
TURN_STATE_SHORTCUTS = frozenset({"turn_index", "token_usage", "last_prompt_usage", "protocol_turn_options"})


def minimal_commit(session_id: str, **changes: Any) -> RuntimeCommit:
    """Contract §3.0 ``minimal(sid, **changes)``: checkpoint shortcuts plus any RuntimeCommit field."""
    turn_changes = {k: changes.pop(k) for k in list(changes) if k in TURN_STATE_SHORTCUTS}
    checkpoint_changes = {k: changes.pop(k) for k in list(changes) if k in CHECKPOINT_SHORTCUTS}
    checkpoint: HydratedSessionCheckpoint = changes.pop("checkpoint", HydratedSessionCheckpoint())
    if turn_changes:
        checkpoint = checkpoint.model_copy(
            update={"turn_state": checkpoint.turn_state.model_copy(update=turn_changes)}
        )
    if checkpoint_changes:
        checkpoint = checkpoint.model_copy(update=checkpoint_changes)
    fields: dict[str, Any] = {
        "session_id": session_id,
        "expected_head_revision": None,
        "config": PersistedSessionConfig(
            provider_id="", model={"id": "", "limits": {"context_window_tokens": 1}}
        ),
        "agent_frames": [],
        "current_agent_frame_id": "",
        "graph": GraphReplaceFull(SessionGraph(nodes=[], leaf_node_id=None)),
        "checkpoint": checkpoint,
        "usage_deltas": [],
        "turn_commit": None,
        "completed_queue_claims": [],
        "committed_attachment_ids": [],
    }
    fields.update(changes)
    return RuntimeCommit(**fields)


minimal = minimal_commit


def node(node_id: str, parent: str | None = None) -> SessionNodeRecord:
    """Contract §3.0 ``node(id, parent=None)``: a protocol event naming its own id."""
    return SessionNodeRecord(
        node_id=node_id,
        parent_node_id=parent,
        timestamp="1970-01-01T00:00:00Z",
        kind="event",
        event={"Protocol": {"plugin_id": "conformance", "payload": {"node": node_id}}},
    )


def turn_input(text_value: str) -> dict[str, Any]:
    return {
        "type": "turn_input",
        "input": {"items": [{"type": "text", "text": text_value}], "image_blobs": {}},
    }


def draft(
    session_id: str,
    text_value: str,
    delivery: DeliveryPolicy,
    slot: SlotPolicy,
    merge: MergeKey | None = None,
    source: str | None = None,
    available: int = 0,
) -> QueuedWorkBatchDraft:
    """Contract §3.0 ``draft(sid, text, delivery, slot, merge=never, source=None, available=0)``."""
    return QueuedWorkBatchDraft(
        session_id=session_id,
        source_key=source,
        delivery_policy=delivery,
        slot_policy=slot,
        merge_key=MergeKey.never() if merge is None else merge,
        available_at_ms=available,
        payloads=[turn_input(text_value)],
    )


def text(batch: QueuedWorkBatch) -> str:
    """Contract §3.0 ``text(batch)``: the text of the batch's first item."""
    return str(batch.items[0].payload["input"]["items"][0]["text"])


def leased(commit: RuntimeCommit, lease: SessionExecutionLease) -> RuntimeCommit:
    """Contract §3.0 ``leased(commit, L)``: fenced by ``L`` and releasing it."""
    return commit.with_session_execution_lease(lease.fence()).releasing_session_execution_lease(
        lease.completion()
    )


class Clock:
    """An injected clock: ``clock.now = 1200`` moves time without sleeping."""

    def __init__(self, now: int = 1000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
