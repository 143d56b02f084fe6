"""A small pure-Python reference model of the sessionfence contract (contract.md §2), for model-based tests.

One namespace, no factory pre-binding, no Redis. It follows the contract text literally and is deliberately
naive (lists and dicts, linear scans) so that it is easy to check against the prose. It uses the package's
pydantic models only as input and output *containers* and its error classes as the vocabulary of outcomes;
every decision (ordering of checks, selection, fencing, reachability, merging) is made here.

Values the store mints at random are adopted from the store's answer: a new batch's `batch_id` (the model
decides whether an enqueue is new or a duplicate, then takes the id) and a queue claim's `lease_token` (the
model decides what is selected, then takes the token). Everything else, including session lease tokens and
claim ids, is computed independently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from sessionfence.errors import (
    BackendError,
    HeadRevisionConflict,
    InvalidRequest,
    QueuedWorkClaimExpired,
    RuntimeTurnCommitConflict,
    SessionBindingMismatch,
    SessionExecutionLeaseExpired,
)
from sessionfence.models import (
    ActivePath,
    AttachmentIntent,
    AttachmentManifestEntry,
    DeliveryPolicy,
    FullGraph,
    GcReport,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    PersistedSessionConfig,
    PersistedSessionRead,
    PersistedTurnState,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    QueuedWorkItem,
    RuntimeCommit,
    RuntimeCommitResult,
    SessionCheckpoint,
    SessionExecutionLease,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseFence,
    SessionGraph,
    SessionHeadMeta,
    SessionNodeRecord,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
    VacuumReport,
)

__all__ = ["MAX_MS", "ReferenceStore"]

MAX_MS = 2**53 - 1


def _canonical(value: Any) -> bytes:
    """§2.4 step 4 for the plain JSON values the model sees (no floats): sorted keys, no whitespace."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _expiry(now: int, ttl: int) -> int:
    return min(now + ttl, MAX_MS)


def _turn_state_wire(ts: PersistedTurnState) -> dict[str, Any]:
    usage = ts.token_usage
    wire: dict[str, Any] = {
        "turn_index": ts.turn_index,
        "token_usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
        },
    }
    if ts.last_prompt_usage is not None:
        wire["last_prompt_usage"] = ts.last_prompt_usage
    wire["protocol_turn_options"] = ts.protocol_turn_options
    return wire


@dataclass
class LeaseRow:
    owner: str | None
    token: str | None
    fencing: int
    claimed: int
    expires: int

    def live(self, now: int) -> bool:
        return self.token is not None and self.expires > now


@dataclass
class BatchRow:
    batch: QueuedWorkBatch
    claim_id: str | None = None
    owner: str | None = None
    token: str | None = None
    fencing: int = 0
    claimed: int = 0
    expires: int = 0

    def live_claimed(self, now: int) -> bool:
        return self.token is not None and self.expires > now

    def carries(self, claim_id: str, token: str) -> bool:
        return self.claim_id == claim_id and self.token == token

    def clear_claim(self) -> None:
        self.claim_id = self.owner = self.token = None
        self.claimed = self.expires = 0


@dataclass
class NodeRow:
    record: SessionNodeRecord
    tombstoned: bool = False


@dataclass
class AttachmentRow:
    session_id: str
    canonical_uri: str
    intent_at: int
    committed_at: int | None = None


@dataclass
class Head:
    session_id: str
    head_revision: int
    config: PersistedSessionConfig
    agent_frames: list[Any]
    current_agent_frame_id: str
    checkpoint_ref: str
    leaf_node_id: str | None
    graph_node_count: int


@dataclass
class ReferenceStore:
    now: int = 0
    head: Head | None = None
    nodes: dict[str, NodeRow] = field(default_factory=dict)  # insertion order is graph order
    blobs: dict[str, bytes] = field(default_factory=dict)
    usage_log: list[TokenLedgerEntry] = field(default_factory=list)
    turns: dict[tuple[str, str], tuple[str, RuntimeCommitResult]] = field(default_factory=dict)
    leases: dict[str, LeaseRow] = field(default_factory=dict)
    batches: dict[str, BatchRow] = field(default_factory=dict)
    enqueue_seq: int = 0
    attachments: dict[str, AttachmentRow] = field(default_factory=dict)

    # ---- session execution leases (§2.2) -------------------------------------------------------------------

    def try_claim_session_execution_lease(
        self, sid: str, owner: str, ttl: int
    ) -> SessionExecutionLease | None:
        row = self.leases.get(sid)
        if row is not None and row.live(self.now):
            return None
        fencing = (row.fencing if row else 0) + 1
        token = f"{sid}:{owner}:{self.now}:{fencing}"
        self.leases[sid] = LeaseRow(owner, token, fencing, self.now, _expiry(self.now, ttl))
        return SessionExecutionLease(
            session_id=sid,
            owner_id=owner,
            lease_token=token,
            fencing_token=fencing,
            claimed_at_epoch_ms=self.now,
            expires_at_epoch_ms=_expiry(self.now, ttl),
        )

    def _matches(self, sid: str, f: SessionExecutionLeaseFence | SessionExecutionLeaseCompletion) -> bool:
        row = self.leases.get(sid)
        return (
            row is not None
            and row.owner == f.owner_id
            and row.token == f.lease_token
            and row.fencing == f.fencing_token
        )

    def _fence_ok(self, sid: str, fence: SessionExecutionLeaseFence) -> bool:
        return fence.session_id == sid and self._matches(sid, fence) and self.leases[sid].live(self.now)

    def renew_session_execution_lease(
        self, fence: SessionExecutionLeaseFence, ttl: int
    ) -> SessionExecutionLease:
        sid = fence.session_id
        if not self._fence_ok(sid, fence):
            raise SessionExecutionLeaseExpired(sid)
        row = self.leases[sid]
        row.expires = _expiry(self.now, ttl)
        return SessionExecutionLease(
            session_id=sid,
            owner_id=fence.owner_id,
            lease_token=fence.lease_token,
            fencing_token=fence.fencing_token,
            claimed_at_epoch_ms=row.claimed,
            expires_at_epoch_ms=row.expires,
        )

    def release_session_execution_lease(self, completion: SessionExecutionLeaseCompletion) -> None:
        sid = completion.session_id
        if self._matches(sid, completion):
            row = self.leases[sid]
            row.owner = row.token = None
            row.claimed = row.expires = 0

    # ---- commit (§2.3) -------------------------------------------------------------------------------------

    def commit_runtime_state(self, c: RuntimeCommit) -> RuntimeCommitResult:
        g = c.graph
        delta_nodes = (
            g.nodes
            if isinstance(g, GraphAppend)
            else g.graph.nodes
            if isinstance(g, GraphReplaceFull)
            else []
        )
        if len({n.node_id for n in delta_nodes}) != len(delta_nodes):
            raise InvalidRequest("node id appears twice in one delta")
        sid = c.session_id
        # 2. binding, 3. stamp session, 4. replay
        if self.head is not None and self.head.session_id != sid:
            raise SessionBindingMismatch(self.head.session_id, sid)
        stamp = c.turn_commit
        if stamp is not None and stamp.session_id != sid:
            raise RuntimeTurnCommitConflict(stamp.session_id, stamp.turn_id)
        if stamp is not None and (sid, stamp.turn_id) in self.turns:
            stored_hash, stored_result = self.turns[(sid, stamp.turn_id)]
            if stored_hash != stamp.turn_commit_hash:
                raise RuntimeTurnCommitConflict(sid, stamp.turn_id)
            if c.release_session_execution_lease is not None:
                self.release_session_execution_lease(c.release_session_execution_lease)
            return stored_result
        # 5. fence, 6. CAS
        if c.session_execution_lease is None or not self._fence_ok(sid, c.session_execution_lease):
            raise SessionExecutionLeaseExpired(sid)
        actual = self.head.head_revision if self.head else 0
        if c.expected_head_revision is not None and c.expected_head_revision != actual:
            raise HeadRevisionConflict(c.expected_head_revision, actual)
        # 7. completions, judged against the state before the commit
        done: list[str] = []
        for comp in c.completed_queue_claims:
            if comp.session_id != sid:
                raise QueuedWorkClaimExpired(comp.session_id, comp.claim_id)
            carriers = {
                bid
                for bid, row in self.batches.items()
                if row.batch.session_id == sid and row.carries(comp.claim_id, comp.lease_token)
            }
            named = comp.batch_ids
            if len(set(named)) != len(named) or set(named) != carriers:
                raise QueuedWorkClaimExpired(comp.session_id, comp.claim_id)
            done += [b for b in named if b not in done]
        # 8. collisions
        if isinstance(g, GraphAppend):
            for n in g.nodes:
                if n.node_id in self.nodes:
                    raise BackendError(f"graph node `{n.node_id}` is already stored")

        # 9. blobs and manifest
        cp = c.checkpoint
        new_blobs: list[tuple[str, bytes]] = []

        def put(body: bytes) -> str:
            ref = _sha(body)
            new_blobs.append((ref, body))
            return ref

        tool_ref = put(_canonical(cp.tool_state)) if cp.tool_state is not None else cp.tool_state_ref
        plugin_ref = (
            put(_canonical(cp.plugin_snapshot)) if cp.plugin_snapshot is not None else cp.plugin_snapshot_ref
        )
        exec_ref = (
            put(bytes(cp.execution_state)) if cp.execution_state is not None else cp.execution_state_ref
        )
        wire: dict[str, Any] = {"turn_state": _turn_state_wire(cp.turn_state)}
        for key, value in (
            ("tool_state_ref", tool_ref),
            ("plugin_snapshot_ref", plugin_ref),
            ("plugin_snapshot_revision", cp.plugin_snapshot_revision),
            ("execution_state_ref", exec_ref),
        ):
            if value is not None:
                wire[key] = value
        checkpoint_ref = put(_canonical(wire))
        for ref, body in new_blobs:
            self.blobs.setdefault(ref, body)
        manifest = SessionCheckpoint(
            turn_state=cp.turn_state,
            tool_state_ref=tool_ref,
            plugin_snapshot_ref=plugin_ref,
            plugin_snapshot_revision=cp.plugin_snapshot_revision,
            execution_state_ref=exec_ref,
        )
        # 10. usage, 11. graph, 12. count, 13. head
        self.usage_log += c.usage_deltas
        if isinstance(g, GraphAppend):
            for n in g.nodes:
                self.nodes[n.node_id] = NodeRow(n)
            leaf = g.leaf_node_id
        elif isinstance(g, GraphReplaceFull):
            self.nodes = {n.node_id: NodeRow(n) for n in g.graph.nodes}
            leaf = g.graph.leaf_node_id
        else:
            assert isinstance(g, GraphUnchanged)
            leaf = g.leaf_node_id
        count = sum(1 for row in self.nodes.values() if not row.tombstoned)
        self.head = Head(
            session_id=sid,
            head_revision=actual + 1,
            config=c.config,
            agent_frames=c.agent_frames,
            current_agent_frame_id=c.current_agent_frame_id,
            checkpoint_ref=checkpoint_ref,
            leaf_node_id=leaf,
            graph_node_count=count,
        )
        # 14. completed batches, 15. attachments
        for bid in done:
            del self.batches[bid]
        for aid in c.committed_attachment_ids:
            row = self.attachments.get(aid)
            if row is not None and row.session_id == sid and row.committed_at is None:
                row.committed_at = self.now
        result = RuntimeCommitResult(
            head_revision=actual + 1, checkpoint_ref=checkpoint_ref, manifest=manifest
        )
        # 16. turn record, 17. release
        if stamp is not None:
            self.turns[(sid, stamp.turn_id)] = (stamp.turn_commit_hash, result)
        if c.release_session_execution_lease is not None:
            self.release_session_execution_lease(c.release_session_execution_lease)
        return result

    # ---- reads (§2.5) --------------------------------------------------------------------------------------

    def load_session_head_meta(self) -> SessionHeadMeta | None:
        h = self.head
        if h is None:
            return None
        return SessionHeadMeta(
            session_id=h.session_id,
            head_revision=h.head_revision,
            config=h.config,
            agent_frames=h.agent_frames,
            current_agent_frame_id=h.current_agent_frame_id,
            checkpoint_ref=h.checkpoint_ref,
            leaf_node_id=h.leaf_node_id,
            graph_node_count=h.graph_node_count,
            token_ledger=[],
        )

    def _live(self, node_id: str | None) -> NodeRow | None:
        row = self.nodes.get(node_id) if node_id is not None else None
        return None if row is None or row.tombstoned else row

    def merged_ledger(self) -> list[TokenLedgerEntry]:
        merged: dict[tuple[str, str], list[int]] = {}
        for e in self.usage_log:
            u = e.usage
            if u.total() == 0 and u.cached_input_tokens == 0:
                continue
            acc = merged.setdefault((e.source, e.model), [0, 0, 0, 0])
            for i, v in enumerate(
                (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens)
            ):
                acc[i] += v
        return [TokenLedgerEntry(source=s, model=m, usage=TokenUsage(*acc)) for (s, m), acc in merged.items()]

    def _hydrate(self, ref: str) -> HydratedSessionCheckpoint | None:
        raw = self.blobs.get(ref)
        if raw is None:
            return None
        try:
            m = SessionCheckpoint.from_wire(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise BackendError("manifest does not decode") from exc

        def json_body(r: str | None) -> Any:
            body = self.blobs.get(r) if r is not None else None
            if body is None:
                return None
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BackendError("component does not decode") from exc

        exec_body = self.blobs.get(m.execution_state_ref) if m.execution_state_ref is not None else None
        return HydratedSessionCheckpoint(
            turn_state=m.turn_state,
            tool_state_ref=m.tool_state_ref,
            tool_state=json_body(m.tool_state_ref),
            plugin_snapshot_ref=m.plugin_snapshot_ref,
            plugin_snapshot=json_body(m.plugin_snapshot_ref),
            plugin_snapshot_revision=m.plugin_snapshot_revision,
            execution_state_ref=m.execution_state_ref,
            execution_state=exec_body,
        )

    def load_session(self, scope: FullGraph | ActivePath) -> PersistedSessionRead | None:
        h = self.head
        if h is None:
            return None
        if isinstance(scope, FullGraph):
            nodes = [row.record for row in self.nodes.values() if not row.tombstoned]
            leaf = h.leaf_node_id
        else:
            leaf = scope.leaf_node_id if scope.leaf_node_id is not None else h.leaf_node_id
            walk: list[SessionNodeRecord] = []
            seen: set[str] = set()
            cur = leaf
            while cur is not None and cur not in seen:
                row = self._live(cur)
                if row is None:
                    break
                seen.add(cur)
                walk.append(row.record)
                cur = row.record.parent_node_id
            nodes = walk[::-1]
        return PersistedSessionRead(
            session_id=h.session_id,
            head_revision=h.head_revision,
            config=h.config,
            agent_frames=h.agent_frames,
            current_agent_frame_id=h.current_agent_frame_id,
            graph=SessionGraph(nodes=nodes, leaf_node_id=leaf),
            checkpoint_ref=h.checkpoint_ref,
            checkpoint=self._hydrate(h.checkpoint_ref),
            token_ledger=self.merged_ledger(),
        )

    def load_node(self, node_id: str) -> SessionNodeRecord | None:
        row = self._live(node_id)
        return None if row is None else row.record

    # ---- queued work (§2.6-§2.11) --------------------------------------------------------------------------

    def _session_batches(self, sid: str) -> list[BatchRow]:
        return sorted(
            (r for r in self.batches.values() if r.batch.session_id == sid), key=lambda r: r.batch.enqueue_seq
        )

    def enqueue_queued_work(self, draft: QueuedWorkBatchDraft, minted_batch_id: str) -> QueuedWorkBatch:
        if draft.source_key is not None:
            for row in self.batches.values():
                b = row.batch
                if b.session_id == draft.session_id and b.source_key == draft.source_key:
                    return b
        self.enqueue_seq += 1
        bid = minted_batch_id
        batch = QueuedWorkBatch(
            batch_id=bid,
            session_id=draft.session_id,
            enqueue_seq=self.enqueue_seq,
            source_key=draft.source_key,
            delivery_policy=draft.delivery_policy,
            slot_policy=draft.slot_policy,
            merge_key=draft.merge_key,
            available_at_ms=draft.available_at_ms,
            enqueued_at_ms=self.now,
            items=[
                QueuedWorkItem(item_id=f"{bid}:item:{i}", payload=p) for i, p in enumerate(draft.payloads)
            ],
        )
        self.batches[bid] = BatchRow(batch)
        return batch

    def _select(self, sid: str, boundary: QueuedWorkClaimBoundary, max_batches: int) -> list[BatchRow]:
        candidates = [
            r
            for r in self._session_batches(sid)
            if not r.live_claimed(self.now) and r.batch.available_at_ms <= self.now
        ]
        if not candidates:
            return []
        first = candidates[0].batch
        if (
            boundary is QueuedWorkClaimBoundary.ACTIVE_TURN_CHECKPOINT
            and first.delivery_policy is not DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
        ):
            return []
        selected = [candidates[0]]
        if first.slot_policy is SlotPolicy.EXCLUSIVE:
            return selected
        for r in candidates[1:]:
            b = r.batch
            if (
                len(selected) < max_batches
                and b.slot_policy is SlotPolicy.JOIN
                and b.delivery_policy is first.delivery_policy
                and b.merge_key == first.merge_key
            ):
                selected.append(r)
            else:
                break
        return selected

    def claim_ready_queued_work(
        self,
        sid: str,
        fence: SessionExecutionLeaseFence,
        owner: str,
        boundary: QueuedWorkClaimBoundary,
        ttl: int,
        max_batches: int,
        token: str,
    ) -> QueuedWorkClaim | None:
        if max_batches == 0:
            return None
        if not self._fence_ok(sid, fence):
            raise SessionExecutionLeaseExpired(sid)
        selected = self._select(sid, boundary, max_batches)
        if not selected:
            return None
        head = selected[0]
        fencing = head.fencing + 1
        claim_id = f"qwc:{head.batch.enqueue_seq}:{fencing}"
        expires = _expiry(self.now, ttl)
        for r in selected:
            r.claim_id, r.owner, r.token, r.claimed, r.expires = claim_id, owner, token, self.now, expires
            r.fencing += 1
        return QueuedWorkClaim(
            session_id=sid,
            claim_id=claim_id,
            owner_id=owner,
            lease_token=token,
            fencing_token=fencing,
            claimed_at_epoch_ms=self.now,
            expires_at_epoch_ms=expires,
            batches=[r.batch for r in selected],
        )

    def claim_ready_queued_work_by_batch_ids(
        self,
        sid: str,
        fence: SessionExecutionLeaseFence,
        owner: str,
        boundary: QueuedWorkClaimBoundary,
        ttl: int,
        batch_ids: list[str],
        token: str,
    ) -> QueuedWorkClaim | None:
        if not batch_ids:
            return None
        claim = self.claim_ready_queued_work(sid, fence, owner, boundary, ttl, len(batch_ids), token)
        if claim is None:
            return None
        if [b.batch_id for b in claim.batches] == list(batch_ids):
            return claim
        self.abandon_queued_work_claim(claim)
        return None

    def renew_queued_work_claim(self, claim: QueuedWorkClaim, ttl: int) -> QueuedWorkClaim:
        carriers = [
            r
            for r in self.batches.values()
            if r.batch.session_id == claim.session_id and r.carries(claim.claim_id, claim.lease_token)
        ]
        if len(carriers) != len(claim.batches):
            raise QueuedWorkClaimExpired(claim.session_id, claim.claim_id)
        expires = _expiry(self.now, ttl)
        for r in carriers:
            r.expires = expires
        return claim.model_copy(update={"expires_at_epoch_ms": expires})

    def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> None:
        for r in self.batches.values():
            if r.batch.session_id == claim.session_id and r.carries(claim.claim_id, claim.lease_token):
                r.clear_claim()

    def cancel_queued_work_batch(self, sid: str, batch_id: str) -> QueuedWorkBatch | None:
        row = self.batches.get(batch_id)
        if row is None or row.batch.session_id != sid or row.live_claimed(self.now):
            return None
        del self.batches[batch_id]
        return row.batch

    def list_queued_work(self, sid: str) -> list[QueuedWorkBatch]:
        return [r.batch for r in self._session_batches(sid)]

    def list_pending_queued_work(self, sid: str) -> list[QueuedWorkBatch]:
        return [r.batch for r in self._session_batches(sid) if not r.live_claimed(self.now)]

    # ---- maintenance (§2.13, §2.14) ------------------------------------------------------------------------

    def tombstone_nodes(self, ids: list[str]) -> None:
        for node_id in ids:
            if node_id in self.nodes:
                self.nodes[node_id].tombstoned = True

    def vacuum(self) -> VacuumReport:
        gone = [k for k, row in self.nodes.items() if row.tombstoned]
        for k in gone:
            del self.nodes[k]
        return VacuumReport(removed_node_count=len(gone))

    def gc_unreachable(self) -> GcReport:
        retained: set[str] = set()
        roots = 0
        if self.head is not None:
            roots = 1
            root = self.head.checkpoint_ref
            retained.add(root)
            raw = self.blobs.get(root)
            if raw is not None:
                try:
                    m = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise BackendError("live manifest does not decode") from exc
                for key in ("tool_state_ref", "plugin_snapshot_ref", "execution_state_ref"):
                    if isinstance(m.get(key), str):
                        retained.add(m[key])
        doomed = [ref for ref in self.blobs if ref not in retained]
        for ref in doomed:
            del self.blobs[ref]
        return GcReport(root_count=roots, retained_blob_count=len(retained), deleted_blob_count=len(doomed))

    # ---- attachment manifest (§2.15) -----------------------------------------------------------------------

    def record_intent(self, intent: AttachmentIntent) -> None:
        row = self.attachments.get(intent.attachment_id)
        committed = row.committed_at if row is not None else None
        self.attachments[intent.attachment_id] = AttachmentRow(
            intent.session_id, intent.canonical_uri, intent.intent_at_epoch_ms, committed
        )

    def commit_refs(self, sid: str, ids: list[str]) -> None:
        for aid in ids:
            row = self.attachments.get(aid)
            if row is not None and row.session_id == sid and row.committed_at is None:
                row.committed_at = self.now

    def list_uncommitted(self, older_than: int) -> list[AttachmentManifestEntry]:
        rows = [
            (row.intent_at, aid, row)
            for aid, row in self.attachments.items()
            if row.committed_at is None and row.intent_at <= older_than
        ]
        return [
            AttachmentManifestEntry(
                attachment_id=aid,
                session_id=row.session_id,
                canonical_uri=row.canonical_uri,
                intent_at_epoch_ms=at,
                committed_at_epoch_ms=None,
            )
            for at, aid, row in sorted(rows, key=lambda t: (t[0], t[1]))
        ]

    def forget(self, attachment_id: str) -> None:
        self.attachments.pop(attachment_id, None)
