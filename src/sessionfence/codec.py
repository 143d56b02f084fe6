"""Records to script arguments, and script replies back to records (pure: no I/O).

The async store and its sync twin both build a `Call` here and only differ in how they send it. Everything
that can be decided without Redis is decided here: validation (InvalidRequest before any I/O), canonical JSON,
SHA-256 of blobs, random tokens, and the exact strings the Lua scripts store verbatim.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from . import validation as v
from .canonical import canonical, dumps, loads, sha256_hex
from .errors import (
    SCHEMA_VERSION,
    BackendError,
    HeadRevisionConflict,
    InvalidRequest,
    QueuedWorkClaimExpired,
    RuntimeTurnCommitConflict,
    SessionBindingMismatch,
    SessionExecutionLeaseExpired,
    StoreError,
    UnsupportedRecordSchemaVersion,
    ensure_supported_schema_version,
)
from .keys import NamespaceKeys, ready_index_key, ready_version_key
from .models import (
    ActivePath,
    AttachmentIntent,
    AttachmentManifestEntry,
    DeliveryPolicy,
    FullGraph,
    GcReport,
    GraphAppend,
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    PersistedSessionConfig,
    PersistedSessionRead,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    RuntimeCommit,
    RuntimeCommitResult,
    SessionCheckpoint,
    SessionExecutionLease,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseFence,
    SessionGraph,
    SessionHeadMeta,
    SessionMeta,
    SessionNodeRecord,
    SessionPickerInfo,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
    VacuumReport,
)

__all__ = ["Call", "Codec", "error_from_reply", "settle_ready_call", "signal_ready_call", "texts"]

T = TypeVar("T")
MAX_MS = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script invocation: what to send, and how to turn the reply into the operation's result."""

    script: str
    keys: list[str]
    args: list[Any]
    decode: Callable[[Any], T]


# ---- errors ------------------------------------------------------------------------------------------------

def _error_args(message: str) -> tuple[str, list[str]]:
    code, _, rest = message.partition(" ")
    try:
        args = loads(rest) if rest else []
    except Exception:
        args = [rest]
    return code, [str(a) for a in args] if isinstance(args, list) else [str(args)]


def error_from_reply(message: str) -> StoreError | None:
    """Map a script's 'SF_<CODE> [args]' error reply to its typed StoreError; None for foreign errors."""
    if not message.startswith("SF_"):
        return None
    code, a = _error_args(message)
    try:
        match code:
            case "SF_BINDING":
                return SessionBindingMismatch(a[0], a[1])
            case "SF_TURN_CONFLICT":
                return RuntimeTurnCommitConflict(a[0], a[1])
            case "SF_LEASE_EXPIRED":
                return SessionExecutionLeaseExpired(a[0])
            case "SF_HEAD_CONFLICT":
                return HeadRevisionConflict(int(a[0]), int(a[1]))
            case "SF_CLAIM_EXPIRED":
                return QueuedWorkClaimExpired(a[0], a[1])
            case "SF_SCHEMA":
                return UnsupportedRecordSchemaVersion(a[0], _int_or_raw(a[1]), SCHEMA_VERSION)
            case "SF_NODE_EXISTS":
                return BackendError(f"graph node `{a[0]}` is already stored (append-only history, D3)")
            case "SF_WRONGTYPE":
                return BackendError(f"key {a[0]} holds a {a[1]}, expected a {a[2]}")
            case "SF_CORRUPT":
                return BackendError(f"{a[0]}: {a[1]}")
    except (IndexError, ValueError):
        pass
    return BackendError(message)


def _int_or_raw(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        return value


# ---- stored-record decoding --------------------------------------------------------------------------------

def _text(b: Any) -> str:
    return b.decode() if isinstance(b, bytes) else str(b)


def texts(values: Any) -> list[str]:
    """Decode a list of Redis bulk strings (bytes or str, depending on the client) in sorted order."""
    return sorted(_text(x) for x in values)


def _json(raw: bytes, what: str) -> Any:
    try:
        return loads(raw)
    except Exception as exc:  # orjson.JSONDecodeError
        raise BackendError(f"{what} is not valid JSON: {exc}") from exc


def _versioned(obj: Any, kind: str, where: str) -> dict[str, Any]:
    """Check and strip the schema_version every stored record carries."""
    if not isinstance(obj, dict):
        raise BackendError(f"{where}: {kind} record is not a JSON object")
    version = obj.pop("schema_version", None)
    if not isinstance(version, int):
        raise BackendError(f"{where}: {kind} record has no schema_version")
    ensure_supported_schema_version(kind, version)
    return obj


def _decode(factory: Callable[[Any], T], obj: Any, where: str) -> T:
    try:
        return factory(obj)
    except BackendError as exc:  # the models' 'malformed X record': add which key it came from
        raise BackendError(f"{where}: {exc.message}") from exc
    except StoreError:
        raise
    except Exception as exc:
        raise BackendError(f"{where}: record does not decode: {exc}") from exc


def _pairs(flat: Sequence[bytes]) -> dict[str, bytes]:
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def decode_node(raw: bytes, where: str) -> SessionNodeRecord:
    """Strip the '<order id> <parent len> <parent>' prefix the graph scripts read, then decode the JSON."""
    try:
        sp1 = raw.index(b" ")
        sp2 = raw.index(b" ", sp1 + 1)
        plen = int(raw[sp1 + 1 : sp2])
        body = raw[sp2 + 1 + max(plen, 0) :]
    except ValueError as exc:
        raise BackendError(f"{where}: stored node has no order/parent prefix") from exc
    return _decode(SessionNodeRecord.from_wire, _json(body, where), where)


def encode_node(node: SessionNodeRecord) -> bytes:
    parent = node.parent_node_id
    prefix = b"-1 " if parent is None else str(len(parent.encode())).encode() + b" " + parent.encode()
    return prefix + dumps(node.to_wire())


def decode_batch(raw: bytes, meta: bytes, where: str) -> QueuedWorkBatch:
    """A stored batch is its immutable JSON plus the facts the enqueue script decided (sequence, time)."""
    obj = _versioned(_json(raw, where), "queued_work_batch", where)
    try:
        seq, _avail, at, _rest = meta.split(b" ", 3)
        obj["enqueue_seq"] = int(seq)
        obj["enqueued_at_ms"] = int(at)
    except ValueError as exc:
        raise BackendError(f"{where}: batch {obj.get('batch_id')} has no queue facts") from exc
    return _decode(QueuedWorkBatch.from_wire, obj, where)


def decode_head(flat: Sequence[bytes], where: str) -> SessionHeadMeta:
    h = _pairs(flat)
    try:
        version = int(h["schema_version"])
    except (KeyError, ValueError) as exc:
        raise BackendError(f"{where}: head has no schema_version") from exc
    ensure_supported_schema_version("session_head", version)
    try:
        leaf = h.get("leaf_node_id")
        ref = h.get("checkpoint_ref")
        return SessionHeadMeta(
            session_id=_text(h.get("session_id", b"root")),
            head_revision=int(h.get("head_revision", b"0")),
            config=PersistedSessionConfig.from_wire(_json(h["config"], where)),
            agent_frames=_json(h.get("agent_frames", b"[]"), where),
            current_agent_frame_id=_text(h.get("current_agent_frame_id", b"")),
            checkpoint_ref=_text(ref) if ref else None,
            leaf_node_id=None if leaf is None else _text(leaf),
            graph_node_count=int(h.get("graph_node_count", b"0")),
            token_ledger=[],
        )
    except StoreError:
        raise
    except Exception as exc:
        raise BackendError(f"{where}: head does not decode: {exc}") from exc


def decode_meta(raw: bytes, where: str) -> SessionMeta:
    obj = _versioned(_json(raw, where), "session_meta", where)
    return _decode(SessionMeta.from_wire, obj, where)


def merge_ledger_rows(rows: Sequence[Sequence[bytes]], where: str) -> list[TokenLedgerEntry]:
    out = []
    for key, i, o, c, r in rows:
        source, model = _json(key, where)
        out.append(
            TokenLedgerEntry(
                source=source,
                model=model,
                usage=TokenUsage(
                    input_tokens=int(i), output_tokens=int(o), cached_input_tokens=int(c), reasoning_tokens=int(r)
                ),
            )
        )
    return out


def _skipped(usage: TokenUsage) -> bool:
    """contract §1.7 / D22: an entry adds nothing when its total and its cached tokens are both zero."""
    return usage.total() == 0 and usage.cached_input_tokens == 0


def _flag(present: bool) -> str:
    return "1" if present else "0"


def _fence_args(f: SessionExecutionLeaseFence | SessionExecutionLeaseCompletion | None) -> list[Any]:
    if f is None:
        return ["0", "", "", "", ""]
    return ["1", f.session_id, f.owner_id, f.lease_token, str(f.fencing_token)]


def lease_from_reply(session_id: str, owner_id: str, reply: Sequence[bytes]) -> SessionExecutionLease:
    fencing, claimed, expires = (int(x) for x in reply[:3])
    return SessionExecutionLease(
        session_id=session_id,
        owner_id=owner_id,
        lease_token=f"{session_id}:{owner_id}:{claimed}:{fencing}",
        fencing_token=fencing,
        claimed_at_epoch_ms=claimed,
        expires_at_epoch_ms=expires,
    )


def rfc3339_now_ms(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


class Codec:
    """Builds the `Call` of every operation of one namespace handle."""

    def __init__(
        self, keys: NamespaceKeys, clock: Callable[[], int] | None, bound_session_id: str | None = None
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.bound_session_id = bound_session_id
        self._commit_key_cache: dict[str, list[str]] = {}

    # -- clock ---------------------------------------------------------------------------------------------
    def now_arg(self) -> str:
        """'' tells the script to read the server's TIME; an injected clock is read once per operation."""
        if self.clock is None:
            return ""
        now = self.clock()
        if not isinstance(now, int) or isinstance(now, bool) or not 0 <= now <= MAX_MS:
            raise InvalidRequest(f"injected clock returned {now!r}; expected epoch ms in 0..2**53-1")
        return str(now)

    # -- commit --------------------------------------------------------------------------------------------
    def commit(self, commit: RuntimeCommit) -> Call[RuntimeCommitResult]:
        v.check_commit(commit)
        k = self.keys
        sid = commit.session_id
        cp = commit.checkpoint
        blobs: list[tuple[str, bytes]] = []

        def put(body: bytes) -> str:
            ref = sha256_hex(body)
            blobs.append((ref, body))
            return ref

        tool_ref = put(canonical(cp.tool_state)) if cp.tool_state is not None else cp.tool_state_ref
        plugin_ref = (
            put(canonical(cp.plugin_snapshot)) if cp.plugin_snapshot is not None else cp.plugin_snapshot_ref
        )
        exec_ref = put(bytes(cp.execution_state)) if cp.execution_state is not None else cp.execution_state_ref
        manifest = SessionCheckpoint(
            turn_state=cp.turn_state,
            tool_state_ref=tool_ref,
            plugin_snapshot_ref=plugin_ref,
            plugin_snapshot_revision=cp.plugin_snapshot_revision,
            execution_state_ref=exec_ref,
        )
        manifest_bytes = canonical(manifest.to_wire())
        checkpoint_ref = put(manifest_bytes)

        g = commit.graph
        if isinstance(g, GraphAppend):
            mode, nodes, leaf = "A", g.nodes, g.leaf_node_id
        elif isinstance(g, GraphReplaceFull):
            mode, nodes, leaf = "R", g.graph.nodes, g.graph.leaf_node_id
        else:
            mode, nodes, leaf = "U", [], g.leaf_node_id

        stamp = commit.turn_commit
        args: list[Any] = [self.now_arg(), self.bound_session_id or "", sid]
        if stamp is None:
            args += ["0", "", "", "", "", ""]
        else:
            prefix = (
                b'{"schema_version":1,"turn_commit_hash":' + dumps(stamp.turn_commit_hash)
                + b',"checkpoint_ref":"' + checkpoint_ref.encode() + b'","manifest":' + manifest_bytes
                + b',"head_revision":'
            )
            args += ["1", dumps([stamp.session_id, stamp.turn_id]), stamp.session_id, stamp.turn_id,
                     stamp.turn_commit_hash, prefix]
        args += _fence_args(commit.session_execution_lease)
        args += _fence_args(commit.release_session_execution_lease)
        exp = commit.expected_head_revision
        args += ["" if exp is None else str(exp), mode, _flag(leaf is not None), leaf or ""]
        args += [
            dumps(commit.config.to_wire()), dumps(commit.agent_frames), commit.current_agent_frame_id,
            checkpoint_ref,
        ]
        args.append(len(blobs))
        for ref, body in blobs:
            args += [ref, body]
        usage = [u for u in commit.usage_deltas if not _skipped(u.usage)]
        args.append(len(usage))
        for u in usage:
            us = u.usage
            args += [dumps([u.source, u.model]), us.input_tokens, us.output_tokens, us.cached_input_tokens,
                     us.reasoning_tokens]
        args.append(len(nodes))
        for n in nodes:
            args += [n.node_id, encode_node(n)]
        args.append(len(commit.completed_queue_claims))
        for c in commit.completed_queue_claims:
            args += [c.session_id, c.claim_id, c.lease_token, len(c.batch_ids), *c.batch_ids]
        args.append(len(commit.committed_attachment_ids))
        args += commit.committed_attachment_ids
        args.append(stamp.turn_id if stamp else "")

        keys = self._commit_keys(sid)

        def decode(reply: Any) -> RuntimeCommitResult:
            tag = _text(reply[0])
            if tag == "ok":
                return RuntimeCommitResult(
                    head_revision=int(reply[1]), checkpoint_ref=checkpoint_ref, manifest=manifest
                )
            where = f"{k.turns} turn {stamp.turn_id if stamp else ''}"
            rec = _versioned(_json(reply[1], where), "runtime_turn_commit", where)
            return _decode(
                lambda r: RuntimeCommitResult(
                    head_revision=int(r["head_revision"]),
                    checkpoint_ref=str(r["checkpoint_ref"]),
                    manifest=SessionCheckpoint.from_wire(r["manifest"]),
                ),
                rec,
                where,
            )

        return Call("commit", keys, args, decode)

    def _commit_keys(self, sid: str) -> list[str]:
        """The 24 KEYS of the commit script (lua/commit.lua header), cached per session id."""
        keys = self._commit_key_cache.get(sid)
        if keys is None:
            k = self.keys
            keys = [
                k.schema, k.head, k.nodes, k.node_order, k.tombstones, k.blobs, k.ledger, k.ledger_order, k.turns,
                k.events, k.leases, k.att, k.att_committed, k.att_uncommitted, k.q_batches, k.q_state, k.q_source,
                k.q_srcof, k.q_claims, k.q_all(sid), k.q_ready(sid), k.q_delayed(sid), k.q_held(sid), k.q_meta,
            ]
            if len(self._commit_key_cache) < 64:
                self._commit_key_cache[sid] = keys
        return keys

    # -- session execution leases --------------------------------------------------------------------------
    def try_claim(self, session_id: str, owner_id: str, ttl: int) -> Call[SessionExecutionLease | None]:
        v.check_id("session_id", session_id)
        v.check_id("owner_id", owner_id)
        v.check_u63("lease_ttl_ms", ttl)
        k = self.keys

        def decode(reply: Any) -> SessionExecutionLease | None:
            return None if not reply else lease_from_reply(session_id, owner_id, reply)

        return Call("lease_claim", [k.schema, k.leases, k.fencing],
                    [self.now_arg(), session_id, owner_id, ttl], decode)

    def renew(self, fence: SessionExecutionLeaseFence, ttl: int) -> Call[SessionExecutionLease]:
        v.check_lease_fence(fence)
        v.check_u63("lease_ttl_ms", ttl)
        k = self.keys

        def decode(reply: Any) -> SessionExecutionLease:
            return SessionExecutionLease(
                session_id=fence.session_id, owner_id=fence.owner_id, lease_token=fence.lease_token,
                fencing_token=fence.fencing_token, claimed_at_epoch_ms=int(reply[0]),
                expires_at_epoch_ms=int(reply[1]),
            )

        return Call("lease_renew", [k.schema, k.leases],
                    [self.now_arg(), fence.session_id, fence.owner_id, fence.lease_token,
                     str(fence.fencing_token), ttl], decode)

    def release(self, completion: SessionExecutionLeaseCompletion) -> Call[None]:
        v.check_lease_fence(completion)
        k = self.keys
        return Call("lease_release", [k.schema, k.leases],
                    [completion.session_id, completion.owner_id, completion.lease_token,
                     str(completion.fencing_token)], lambda _r: None)

    # -- reads ---------------------------------------------------------------------------------------------
    def load_session(self, scope: FullGraph | ActivePath) -> Call[PersistedSessionRead | None]:
        k = self.keys
        if isinstance(scope, FullGraph):
            args = ["full", "0", ""]
            requested: str | None = None
        elif isinstance(scope, ActivePath):
            requested = scope.leaf_node_id
            args = ["path", _flag(requested is not None), requested or ""]
        else:
            raise InvalidRequest(f"unknown read scope {scope!r}")

        def decode(reply: Any) -> PersistedSessionRead | None:
            if not reply:
                return None
            head_flat, node_vals, manifest_raw, tool, plugin, exe, ledger = reply
            head = decode_head(head_flat, k.head)
            nodes = [decode_node(n, k.nodes) for n in node_vals]
            if isinstance(scope, FullGraph):
                leaf = head.leaf_node_id
            else:
                leaf = requested if requested is not None else head.leaf_node_id
            checkpoint = None
            if manifest_raw is not None:  # an empty blob exists: it must decode, not read as absent
                where = f"{k.blobs} manifest {head.checkpoint_ref}"
                m = _decode(SessionCheckpoint.from_wire, _json(manifest_raw, where), where)
                checkpoint = HydratedSessionCheckpoint(
                    turn_state=m.turn_state,
                    tool_state_ref=m.tool_state_ref,
                    tool_state=_json(tool, f"{k.blobs} {m.tool_state_ref}") if tool is not None else None,
                    plugin_snapshot_ref=m.plugin_snapshot_ref,
                    plugin_snapshot=_json(plugin, f"{k.blobs} {m.plugin_snapshot_ref}") if plugin is not None else None,
                    plugin_snapshot_revision=m.plugin_snapshot_revision,
                    execution_state_ref=m.execution_state_ref,
                    execution_state=bytes(exe) if exe is not None else None,
                )
            return PersistedSessionRead(
                session_id=head.session_id,
                head_revision=head.head_revision,
                config=head.config,
                agent_frames=head.agent_frames,
                current_agent_frame_id=head.current_agent_frame_id,
                graph=SessionGraph(nodes=nodes, leaf_node_id=leaf),
                checkpoint_ref=head.checkpoint_ref,
                checkpoint=checkpoint,
                token_ledger=merge_ledger_rows(ledger, k.ledger),
            )

        keys = [k.schema, k.head, k.nodes, k.node_order, k.tombstones, k.blobs, k.ledger, k.ledger_order]
        return Call("load_session", keys, args, decode)

    def load_head(self) -> Call[SessionHeadMeta | None]:
        k = self.keys
        return Call("load_head", [k.schema, k.head], [],
                    lambda r: decode_head(r, k.head) if r else None)

    def load_node(self, node_id: str) -> Call[SessionNodeRecord | None]:
        if not isinstance(node_id, str):
            raise InvalidRequest("node_id must be a string")
        k = self.keys
        return Call("load_node", [k.schema, k.nodes, k.tombstones], [node_id],
                    lambda r: None if r is None else decode_node(r, f"{k.nodes} {node_id}"))

    # -- metadata ------------------------------------------------------------------------------------------
    def save_meta(self, meta: SessionMeta) -> Call[None]:
        v.check_meta(meta)
        k = self.keys
        return Call("meta_save", [k.schema, k.meta], [self._meta_json(meta)], lambda _r: None)

    @staticmethod
    def _meta_json(meta: SessionMeta) -> bytes:
        return dumps({"schema_version": SCHEMA_VERSION, **meta.to_wire()})

    def load_meta(self) -> Call[SessionMeta | None]:
        k = self.keys
        return Call("meta_load", [k.schema, k.meta], [], lambda r: None if r is None else decode_meta(r, k.meta))

    def picker_info(self) -> Call[SessionPickerInfo | None]:
        k = self.keys

        def decode(reply: Any) -> SessionPickerInfo | None:
            if not reply:
                return None
            meta = decode_meta(reply[0], k.meta)
            users = [n for n in (decode_node(x, k.nodes) for x in reply[1]) if _user_parts(n) is not None]
            first = ""
            if users:
                first = _first_user_message(_user_parts(users[0]) or [])
            return SessionPickerInfo(
                session_id=meta.session_id, cwd=meta.cwd, relation=meta.relation,
                first_user_message=first, user_message_count=len(users),
            )

        return Call("picker_info", [k.schema, k.meta, k.nodes, k.node_order, k.tombstones], [], decode)

    # -- queued work ---------------------------------------------------------------------------------------
    def queue_keys(self, session_id: str) -> list[str]:
        """The one KEYS layout every queue script shares (lua/lib/queue.lua)."""
        k = self.keys
        return [
            k.schema, k.leases, k.q_seq, k.q_batches, k.q_state, k.q_source, k.q_srcof, k.q_meta, k.q_claims,
            k.q_sessions, k.q_all(session_id), k.q_ready(session_id), k.q_delayed(session_id),
            k.q_held(session_id),
        ]

    def enqueue(self, draft: QueuedWorkBatchDraft) -> Call[QueuedWorkBatch]:
        v.check_draft(draft)
        sid = draft.session_id
        batch_id = "qwb:" + sha256_hex(dumps([sid, draft.source_key, secrets.token_hex(16)]))
        record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "batch_id": batch_id, "session_id": sid}
        if draft.source_key is not None:
            record["source_key"] = draft.source_key
        record.update(
            delivery_policy=draft.delivery_policy.value,
            slot_policy=draft.slot_policy.value,
            merge_key=draft.merge_key.to_wire(),
            available_at_ms=draft.available_at_ms,
            items=[{"item_id": f"{batch_id}:item:{i}", "payload": p} for i, p in enumerate(draft.payloads)],
        )
        src = b"" if draft.source_key is None else dumps([sid, draft.source_key])
        args = [
            self.now_arg(), sid, src, batch_id, dumps(record), str(draft.available_at_ms),
            "E" if draft.delivery_policy is DeliveryPolicy.EARLIEST_SAFE_BOUNDARY else "A",
            "X" if draft.slot_policy is SlotPolicy.EXCLUSIVE else "J",
            canonical(draft.merge_key.to_wire()),
        ]
        where = self.keys.q_batches
        return Call("enqueue", self.queue_keys(sid), args, lambda r: decode_batch(r[1], r[2], where))

    def claim(
        self,
        session_id: str,
        fence: SessionExecutionLeaseFence,
        owner_id: str,
        boundary: QueuedWorkClaimBoundary,
        ttl: int,
        max_batches: int,
        exact: Sequence[str] = (),
    ) -> Call[QueuedWorkClaim | None]:
        v.check_id("session_id", session_id)
        v.check_lease_fence(fence)
        v.check_id("owner_id", owner_id)
        v.check_u63("lease_ttl_ms", ttl)
        v.check_u63("max_batches", max_batches)
        if not isinstance(boundary, QueuedWorkClaimBoundary):
            raise InvalidRequest(f"unknown claim boundary {boundary!r}")
        for b in exact:
            v.check_lookup_id("batch_id", b)  # looked up, never written: an empty id matches nothing (§0)
        token = secrets.token_hex(16)
        args = [
            self.now_arg(), session_id, *_fence_args(fence)[1:], owner_id,
            "C" if boundary is QueuedWorkClaimBoundary.ACTIVE_TURN_CHECKPOINT else "I",
            ttl, max_batches, token, len(exact), *exact,
        ]
        where = self.keys.q_batches

        def decode(reply: Any) -> QueuedWorkClaim | None:
            if not reply:
                return None
            cid, fencing, claimed, expires, rows = reply
            return QueuedWorkClaim(
                session_id=session_id, claim_id=_text(cid), owner_id=owner_id, lease_token=token,
                fencing_token=int(fencing), claimed_at_epoch_ms=int(claimed), expires_at_epoch_ms=int(expires),
                batches=[decode_batch(j, m, where) for j, m in rows],
            )

        return Call("claim", self.queue_keys(session_id), args, decode)

    def renew_claim(self, claim: QueuedWorkClaim, ttl: int) -> Call[QueuedWorkClaim]:
        v.check_claim(claim)
        v.check_u63("lease_ttl_ms", ttl)
        args = [self.now_arg(), claim.session_id, claim.claim_id, claim.lease_token, ttl, len(claim.batches)]
        return Call("claim_renew", self.queue_keys(claim.session_id), args,
                    lambda r: claim.model_copy(update={"expires_at_epoch_ms": int(r)}))

    def abandon_claim(self, claim: QueuedWorkClaim) -> Call[None]:
        v.check_claim(claim)
        return Call("claim_abandon", self.queue_keys(claim.session_id),
                    [claim.session_id, claim.claim_id, claim.lease_token], lambda _r: None)

    def cancel(self, session_id: str, batch_id: str) -> Call[QueuedWorkBatch | None]:
        if not isinstance(session_id, str) or not isinstance(batch_id, str):
            raise InvalidRequest("session_id and batch_id must be strings")
        where = self.keys.q_batches
        return Call("cancel", self.queue_keys(session_id), [self.now_arg(), session_id, batch_id],
                    lambda r: decode_batch(r[0], r[1], where) if r else None)

    def list_queue(self, session_id: str, pending: bool) -> Call[list[QueuedWorkBatch]]:
        if not isinstance(session_id, str):
            raise InvalidRequest("session_id must be a string")
        where = self.keys.q_batches
        return Call("list_queue", self.queue_keys(session_id), [self.now_arg(), session_id, _flag(pending)],
                    lambda r: [decode_batch(j, m, where) for j, m in r])

    # -- maintenance ---------------------------------------------------------------------------------------
    def tombstone(self, ids: Sequence[str]) -> Call[None]:
        ids = list(ids)
        for i in ids:
            if not isinstance(i, str):
                raise InvalidRequest("node ids must be strings")
        k = self.keys
        return Call("tombstone", [k.schema, k.nodes, k.tombstones], ids, lambda _r: None)

    def vacuum(self) -> Call[VacuumReport]:
        k = self.keys
        return Call("vacuum", [k.schema, k.nodes, k.node_order, k.tombstones], [],
                    lambda r: VacuumReport(removed_node_count=int(r)))

    def gc(self) -> Call[GcReport]:
        k = self.keys
        return Call("gc", [k.schema, k.head, k.blobs], [],
                    lambda r: GcReport(root_count=int(r[0]), retained_blob_count=int(r[1]),
                                       deleted_blob_count=int(r[2])))

    # -- attachment manifest -------------------------------------------------------------------------------
    def _att_keys(self) -> list[str]:
        k = self.keys
        return [k.schema, k.att, k.att_committed, k.att_uncommitted]

    def record_intent(self, intent: AttachmentIntent) -> Call[None]:
        v.check_intent(intent)
        row = dumps({"schema_version": SCHEMA_VERSION, **intent.to_wire()})
        return Call("att_intent", self._att_keys(),
                    [intent.attachment_id, row, str(intent.intent_at_epoch_ms)], lambda _r: None)

    def commit_refs(self, session_id: str, attachment_ids: Sequence[str]) -> Call[None]:
        ids = list(attachment_ids)
        if not isinstance(session_id, str) or not all(isinstance(i, str) for i in ids):
            raise InvalidRequest("session_id and attachment ids must be strings")
        return Call("att_commit", self._att_keys(), [self.now_arg(), session_id, *ids], lambda _r: None)

    def list_uncommitted(self, older_than_epoch_ms: int) -> Call[list[AttachmentManifestEntry]]:
        v.check_u63("older_than_epoch_ms", older_than_epoch_ms)
        where = self.keys.att

        def decode(reply: Any) -> list[AttachmentManifestEntry]:
            out = []
            for raw in reply:
                obj = _versioned(_json(raw, where), "attachment_manifest_entry", where)
                obj["committed_at_epoch_ms"] = None
                out.append(_decode(AttachmentManifestEntry.from_wire, obj, where))
            return out

        return Call("att_list", self._att_keys(), [str(older_than_epoch_ms)], decode)

    def forget(self, attachment_id: str) -> Call[None]:
        if not isinstance(attachment_id, str):
            raise InvalidRequest("attachment_id must be a string")
        return Call("att_forget", self._att_keys(), [attachment_id], lambda _r: None)

    # -- factory -------------------------------------------------------------------------------------------
    def create(self, request: SessionStoreCreateRequest) -> Call[bool]:
        v.check_id("session_id", request.session_id)
        meta = SessionMeta(
            session_id=request.session_id, session_name=request.session_id,
            created_at=rfc3339_now_ms(int(self.now_arg() or _wall_ms())), model=request.model, cwd=request.cwd,
            relation=request.relation,
        )
        k = self.keys
        return Call("factory_create", [k.schema, k.meta], [self._meta_json(meta)], lambda r: bool(r))

    def exists(self) -> Call[bool]:
        k = self.keys
        return Call("factory_exists", [k.schema, k.meta, k.head], [], lambda r: bool(r))

    def delete(self, queue_sessions: Sequence[str]) -> Call[bool]:
        """False means the queue sessions changed under us: list them again and retry."""
        k = self.keys
        per_session = [
            key for s in queue_sessions for key in (k.q_all(s), k.q_ready(s), k.q_delayed(s), k.q_held(s))
        ]
        rest = [key for key in k.fixed() if key not in (k.q_sessions, k.fencing)]
        return Call("factory_delete", [k.q_sessions, k.fencing, *rest, *per_session], list(queue_sessions),
                    lambda r: not (isinstance(r, bytes) and r == b"retry"))


def _wall_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def _user_parts(node: SessionNodeRecord) -> list[Any] | None:
    """The parts of a User conversation event, else None (contract §2.12)."""
    extra = node.model_extra or {}
    if extra.get("kind") != "event":
        return None
    event = extra.get("event")
    if not isinstance(event, dict):
        return None
    conv = event.get("Conversation")
    if not isinstance(conv, dict) or conv.get("role") != "User":
        return None
    parts = conv.get("parts")
    return parts if isinstance(parts, list) else []


def _first_user_message(parts: list[Any]) -> str:
    texts = []
    for p in parts:
        if not isinstance(p, dict):
            continue
        kind = p.get("kind")
        if kind in ("ToolCall", "ToolResult"):
            continue
        if kind == "Image":
            texts.append("[Image attached]")
            continue
        content = p.get("content")
        if isinstance(content, str) and content.strip():
            texts.append(content)
    return "\n\n".join(texts).strip()


# ---- worker hints (outside the contract: which sessions may have ready work) ------------------------------

def signal_ready_call(prefix: str, session_id: str, due_ms: int) -> Call[int]:
    v.check_id("session_id", session_id)
    keys = [ready_index_key(prefix), ready_version_key(prefix)]
    return Call("signal_ready", keys, [session_id, str(max(0, due_ms))], lambda r: int(r))


def settle_ready_call(prefix: str, session_id: str, version: int, due_ms: int | None) -> Call[bool]:
    keys = [ready_index_key(prefix), ready_version_key(prefix)]
    due = "" if due_ms is None else str(due_ms)
    return Call("settle_ready", keys, [session_id, str(version), due], lambda r: bool(r))
