"""`sessionfence demo`: the smallest end-to-end run — claim a lease, commit three turns, print the session."""

from __future__ import annotations

import uuid

from rich.console import Console
from rich.table import Table

from ..models import (
    ActivePath,
    GraphAppend,
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    PersistedSessionConfig,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
    SessionGraph,
    SessionNodeRecord,
    SessionRelation,
    SessionStoreCreateRequest,
    TokenLedgerEntry,
    TokenUsage,
)
from ..sync import RedisStoreFactory


def _node(node_id: str, parent: str | None, role: str, text: str) -> SessionNodeRecord:
    return SessionNodeRecord.model_validate(
        {
            "node_id": node_id,
            "parent_node_id": parent,
            "timestamp": "2026-11-25T00:00:00Z",
            "kind": "event",
            "event": {
                "Conversation": {
                    "id": f"msg-{node_id}",
                    "role": role,
                    "parts": [{"id": f"part-{node_id}", "kind": "Text", "content": text, "prune_state": "Intact"}],
                }
            },
        }
    )


def run_demo(url: str, console: Console, turns: int = 3) -> int:
    session_id = f"demo-{uuid.uuid4().hex[:8]}"
    factory = RedisStoreFactory.from_url(url)
    try:
        store = factory.create_store(
            SessionStoreCreateRequest(session_id, SessionRelation.root(), "demo-model", "demo-provider")
        )
        lease = store.try_claim_session_execution_lease(session_id, "demo-worker", 30_000)
        assert lease is not None, "a fresh session always has a free lane"
        console.print(f"claimed the execution lease of [bold]{session_id}[/bold]: fencing token {lease.fencing_token}")
        config = PersistedSessionConfig("demo-provider", {"id": "demo-model"})
        leaf: str | None = None
        for turn in range(1, turns + 1):
            user = _node(f"u{turn}", leaf, "User", f"question {turn}")
            reply = _node(f"a{turn}", user.node_id, "Assistant", f"answer {turn}")
            graph = (
                GraphReplaceFull(SessionGraph([user, reply], reply.node_id))
                if leaf is None
                else GraphAppend([user, reply], reply.node_id)
            )
            commit = RuntimeCommit(
                session_id=session_id,
                expected_head_revision=turn - 1,
                config=config,
                agent_frames=[],
                current_agent_frame_id="",
                graph=graph,
                checkpoint=HydratedSessionCheckpoint(tool_state={"generation": turn, "tools": {}}),
                usage_deltas=[TokenLedgerEntry("turn", "demo-model", TokenUsage(100 * turn, 10 * turn, 0, 0))],
            ).with_session_execution_lease(lease.fence())
            stamp = RuntimeTurnCommitStamp(session_id, f"turn-{turn}", commit.turn_commit_hash())
            result = store.commit_runtime_state(commit.with_turn_commit(stamp))
            console.print(
                f"turn {turn}: committed head revision {result.head_revision}, checkpoint {result.checkpoint_ref[:12]}…"
            )
            leaf = reply.node_id
        store.release_session_execution_lease(lease.completion())
        read = store.load_session(ActivePath())
        assert read is not None
        table = Table(title=f"session {session_id} (head revision {read.head_revision})")
        table.add_column("node")
        table.add_column("parent")
        table.add_column("text")
        for n in read.graph.nodes:
            conv = (n.model_extra or {})["event"]["Conversation"]
            table.add_row(n.node_id, n.parent_node_id or "", f"{conv['role']}: {conv['parts'][0]['content']}")
        console.print(table)
        for entry in read.token_ledger:
            u = entry.usage
            console.print(f"usage {entry.source}/{entry.model}: input {u.input_tokens}, output {u.output_tokens}")
        factory.delete_session(session_id)
        return 0
    finally:
        factory.close()
