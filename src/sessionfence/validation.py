"""Argument checks that run before any I/O (contract §0 and §2.3 step 0; pure: no I/O).

Every refusal is an ``InvalidRequest`` naming the offending argument, raised before a single byte is sent,
so a refused call has written nothing (S35). Models deliberately accept out-of-range integers (see
``models.py``); this module is where they are refused. Checks re-verify types with ``isinstance`` because
``model_copy``, ``model_construct`` and attribute assignment all bypass pydantic.

Two kinds of string identifiers exist. Ids an operation *writes* (``check_id``) must be non-empty (§0).
Ids that are only *looked up* (fence and completion fields, attachment ids in a commit, ids to tombstone)
may be empty, because an empty lookup simply matches nothing (§0); only their type and size are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sessionfence.canonical import check_json
from sessionfence.errors import InvalidRequest
from sessionfence.models import (
    ActivePath,
    AttachmentIntent,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    MergeKey,
    PersistedSessionConfig,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseFence,
    SessionMeta,
    SessionNodeRecord,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
)

__all__ = [
    "MAX_I64",
    "MAX_ID_BYTES",
    "MAX_U63",
    "MIN_I64",
    "check_claim",
    "check_commit",
    "check_completion",
    "check_create_request",
    "check_draft",
    "check_i64",
    "check_id",
    "check_intent",
    "check_lease_fence",
    "check_lookup_id",
    "check_meta",
    "check_opt_str",
    "check_opt_u63",
    "check_read_scope",
    "check_relation",
    "check_str",
    "check_str_list",
    "check_u63",
]

MAX_U63 = 2**63 - 1
MIN_I64 = -(2**63)
MAX_I64 = 2**63 - 1
# Ids end up in Redis key names and hash fields; anything this large is a caller bug, not an identifier.
MAX_ID_BYTES = 64 * 1024

_Check = Callable[[str, Any], None]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---- scalars ---------------------------------------------------------------------------------------------


def check_u63(name: str, value: Any) -> None:
    """Contract integers are u64 in Rust; sessionfence takes 0 .. 2**63-1 so every value fits Redis's i64."""
    if not _is_int(value) or not 0 <= value <= MAX_U63:
        raise InvalidRequest(f"{name} must be an integer in 0..{MAX_U63}, got {_short(value)}")


def check_opt_u63(name: str, value: Any) -> None:
    if value is not None:
        check_u63(name, value)


def check_i64(name: str, value: Any) -> None:
    """Token usage counters are signed 64-bit and may be negative (§0)."""
    if not _is_int(value) or not MIN_I64 <= value <= MAX_I64:
        raise InvalidRequest(f"{name} must be an integer in {MIN_I64}..{MAX_I64}, got {_short(value)}")


def check_str(name: str, value: Any) -> None:
    """A string that can be sent at all: lone surrogates fail UTF-8 encoding halfway through a write."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a str, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"{name} is not valid UTF-8 text (lone surrogate)") from None


def check_opt_str(name: str, value: Any) -> None:
    if value is not None:
        check_str(name, value)


def check_lookup_id(name: str, value: Any) -> None:
    """An id that is only looked up: may be empty (it then matches nothing) but not oversized."""
    check_str(name, value)
    if len(value) > MAX_ID_BYTES or (not value.isascii() and len(value.encode("utf-8")) > MAX_ID_BYTES):
        raise InvalidRequest(f"{name} is oversized: more than {MAX_ID_BYTES} bytes")


def check_id(name: str, value: Any) -> None:
    """An id the operation writes: non-empty (§0) and at most ``MAX_ID_BYTES`` of UTF-8."""
    check_lookup_id(name, value)
    if not value:
        raise InvalidRequest(f"{name} must not be empty")


def check_str_list(name: str, values: Any, item: _Check = check_lookup_id) -> None:
    """A list (or tuple) of ids; a bare ``str`` is refused because it would iterate as characters."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise InvalidRequest(f"{name} must be a list of str, got {type(values).__name__}")
    for index, value in enumerate(values):
        item(f"{name}[{index}]", value)


def _check_type(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " | ".join(k.__name__ for k in kind)
        raise InvalidRequest(f"{name} must be a {expected}, got {type(value).__name__}")


def _check_list(name: str, value: Any) -> list[Any]:
    if type(value) is not list:
        raise InvalidRequest(f"{name} must be a list, got {type(value).__name__}")
    return value


def _check_opt_json(name: str, value: Any) -> None:
    if value is not None:
        check_json(value, name)


def _check_fields(path: str, obj: Any, table: Iterable[tuple[str, _Check]]) -> None:
    for attr, check in table:
        check(f"{path}.{attr}", getattr(obj, attr))


# ---- records ---------------------------------------------------------------------------------------------

_LEASE_KEY_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("session_id", check_lookup_id),
    ("owner_id", check_lookup_id),
    ("lease_token", check_lookup_id),
    ("fencing_token", check_u63),
)
_COMPLETION_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("session_id", check_lookup_id),
    ("claim_id", check_lookup_id),
    ("lease_token", check_lookup_id),
    ("batch_ids", check_str_list),
)
_STAMP_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("session_id", check_id),
    ("turn_id", check_id),
    ("turn_commit_hash", check_str),
)
_USAGE_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("input_tokens", check_i64),
    ("output_tokens", check_i64),
    ("cached_input_tokens", check_i64),
    ("reasoning_tokens", check_i64),
)
_NODE_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("node_id", check_id),
    ("parent_node_id", check_opt_str),
    ("agent_frame_id", check_opt_str),
    ("timestamp", check_str),
    ("caused_by", _check_opt_json),
)
_CHECKPOINT_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("tool_state_ref", check_opt_str),
    ("tool_state", _check_opt_json),
    ("plugin_snapshot_ref", check_opt_str),
    ("plugin_snapshot", _check_opt_json),
    ("plugin_snapshot_revision", check_opt_u63),
    ("execution_state_ref", check_opt_str),
)
_CLAIM_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("session_id", check_lookup_id),
    ("claim_id", check_lookup_id),
    ("owner_id", check_lookup_id),
    ("lease_token", check_lookup_id),
    ("fencing_token", check_u63),
    ("claimed_at_epoch_ms", check_u63),
    ("expires_at_epoch_ms", check_u63),
)
_INTENT_FIELDS: tuple[tuple[str, _Check], ...] = (
    ("attachment_id", check_id),
    ("session_id", check_id),
    ("canonical_uri", check_str),
    ("intent_at_epoch_ms", check_u63),
)


def check_lease_fence(
    fence: SessionExecutionLeaseFence | SessionExecutionLeaseCompletion, name: str = "fence"
) -> None:
    """Fences and release completions share one shape; both are lookups, so empty strings are allowed."""
    _check_type(name, fence, (SessionExecutionLeaseFence, SessionExecutionLeaseCompletion))
    _check_fields(name, fence, _LEASE_KEY_FIELDS)


def check_completion(completion: QueuedWorkCompletion, name: str = "completion") -> None:
    _check_type(name, completion, QueuedWorkCompletion)
    _check_fields(name, completion, _COMPLETION_FIELDS)


def check_relation(relation: SessionRelation, name: str = "relation") -> None:
    _check_type(name, relation, SessionRelation)
    if relation.kind == "root":
        if relation.parent_session_id is not None or relation.caused_by is not None:
            raise InvalidRequest(f"{name}: a root relation has no parent_session_id or caused_by")
    elif relation.kind == "child":
        check_str(f"{name}.parent_session_id", relation.parent_session_id)
        _check_opt_json(f"{name}.caused_by", relation.caused_by)
    else:
        raise InvalidRequest(f"{name}.kind must be 'root' or 'child', got {_short(relation.kind)}")


def check_read_scope(scope: FullGraph | ActivePath, name: str = "scope") -> None:
    _check_type(name, scope, (FullGraph, ActivePath))
    if isinstance(scope, ActivePath):
        check_opt_str(f"{name}.leaf_node_id", scope.leaf_node_id)


def _plain_node(node: SessionNodeRecord) -> bool:
    """Fast path for the common node (ASCII ids, no caused_by); anything else takes the exact, named checks."""
    nid, parent, frame, ts = node.node_id, node.parent_node_id, node.agent_frame_id, node.timestamp
    return (
        type(nid) is str
        and 0 < len(nid) <= MAX_ID_BYTES
        and nid.isascii()
        and (parent is None or (type(parent) is str and parent.isascii()))
        and (frame is None or (type(frame) is str and frame.isascii()))
        and type(ts) is str
        and ts.isascii()
        and node.caused_by is None
    )


def _check_nodes(name: str, nodes: Any) -> None:
    """Node ids must be unique within one delta (§2.3 step 0); stored-node collisions are the script's job."""
    seen: set[str] = set()
    for index, node in enumerate(_check_list(name, nodes)):
        path = f"{name}[{index}]"
        _check_type(path, node, SessionNodeRecord)
        if not _plain_node(node):
            _check_fields(path, node, _NODE_FIELDS)
        if node.node_id in seen:
            raise InvalidRequest(f"{name}: node id {_short(node.node_id)} appears more than once")
        seen.add(node.node_id)
        if node.__pydantic_extra__:
            check_json(node.__pydantic_extra__, path)


def _check_graph_delta(name: str, delta: Any) -> None:
    if isinstance(delta, (GraphUnchanged, GraphAppend)):
        check_opt_str(f"{name}.leaf_node_id", delta.leaf_node_id)
        if isinstance(delta, GraphAppend):
            _check_nodes(f"{name}.nodes", delta.nodes)
    elif isinstance(delta, GraphReplaceFull):
        graph = delta.graph
        check_opt_str(f"{name}.graph.leaf_node_id", graph.leaf_node_id)
        _check_nodes(f"{name}.graph.nodes", graph.nodes)
    else:
        raise InvalidRequest(
            f"{name} must be GraphUnchanged, GraphAppend or GraphReplaceFull, got {type(delta).__name__}"
        )


def _check_checkpoint(name: str, checkpoint: Any) -> None:
    _check_type(name, checkpoint, HydratedSessionCheckpoint)
    turn = checkpoint.turn_state
    check_u63(f"{name}.turn_state.turn_index", turn.turn_index)
    _check_fields(f"{name}.turn_state.token_usage", turn.token_usage, _USAGE_FIELDS)
    _check_opt_json(f"{name}.turn_state.last_prompt_usage", turn.last_prompt_usage)
    check_json(turn.protocol_turn_options, f"{name}.turn_state.protocol_turn_options")
    _check_fields(name, checkpoint, _CHECKPOINT_FIELDS)
    if checkpoint.execution_state is not None:
        _check_type(f"{name}.execution_state", checkpoint.execution_state, bytes)


def _check_config(name: str, config: Any) -> None:
    _check_type(name, config, PersistedSessionConfig)
    check_str(f"{name}.provider_id", config.provider_id)
    check_json(config.model, f"{name}.model")


def check_commit(commit: RuntimeCommit) -> None:
    """Everything §2.3 step 0 can refuse without Redis, in field order."""
    _check_type("commit", commit, RuntimeCommit)
    check_id("commit.session_id", commit.session_id)
    check_opt_u63("commit.expected_head_revision", commit.expected_head_revision)
    if commit.session_execution_lease is not None:
        check_lease_fence(commit.session_execution_lease, "commit.session_execution_lease")
    if commit.release_session_execution_lease is not None:
        check_lease_fence(commit.release_session_execution_lease, "commit.release_session_execution_lease")
    _check_config("commit.config", commit.config)
    check_json(_check_list("commit.agent_frames", commit.agent_frames), "commit.agent_frames")
    check_str("commit.current_agent_frame_id", commit.current_agent_frame_id)
    _check_graph_delta("commit.graph", commit.graph)
    _check_checkpoint("commit.checkpoint", commit.checkpoint)
    for index, entry in enumerate(_check_list("commit.usage_deltas", commit.usage_deltas)):
        path = f"commit.usage_deltas[{index}]"
        _check_type(path, entry, TokenLedgerEntry)
        check_str(f"{path}.source", entry.source)
        check_str(f"{path}.model", entry.model)
        _check_fields(f"{path}.usage", entry.usage, _USAGE_FIELDS)
    if commit.turn_commit is not None:
        _check_type("commit.turn_commit", commit.turn_commit, RuntimeTurnCommitStamp)
        _check_fields("commit.turn_commit", commit.turn_commit, _STAMP_FIELDS)
    for index, completion in enumerate(
        _check_list("commit.completed_queue_claims", commit.completed_queue_claims)
    ):
        check_completion(completion, f"commit.completed_queue_claims[{index}]")
    check_str_list("commit.committed_attachment_ids", commit.committed_attachment_ids)


def check_draft(draft: QueuedWorkBatchDraft) -> None:
    _check_type("draft", draft, QueuedWorkBatchDraft)
    check_id("draft.session_id", draft.session_id)
    if draft.source_key is not None:
        check_lookup_id("draft.source_key", draft.source_key)
    _check_type("draft.delivery_policy", draft.delivery_policy, DeliveryPolicy)
    _check_type("draft.slot_policy", draft.slot_policy, SlotPolicy)
    merge_key = draft.merge_key
    _check_type("draft.merge_key", merge_key, MergeKey)
    if merge_key.kind == "group":
        check_str("draft.merge_key.label", merge_key.label)
    elif merge_key.kind not in ("never", "payload_default") or merge_key.label is not None:
        raise InvalidRequest(f"draft.merge_key is not a valid MergeKey: {_short(merge_key)}")
    check_u63("draft.available_at_ms", draft.available_at_ms)
    check_json(_check_list("draft.payloads", draft.payloads), "draft.payloads")


def check_claim(claim: QueuedWorkClaim, name: str = "claim") -> None:
    """Renew and abandon only look the claim up, so ids are checked for type and size, not emptiness."""
    _check_type(name, claim, QueuedWorkClaim)
    _check_fields(name, claim, _CLAIM_FIELDS)
    for index, batch in enumerate(_check_list(f"{name}.batches", claim.batches)):
        _check_type(f"{name}.batches[{index}]", batch, QueuedWorkBatch)
        check_lookup_id(f"{name}.batches[{index}].batch_id", batch.batch_id)


def check_meta(meta: SessionMeta) -> None:
    _check_type("meta", meta, SessionMeta)
    check_id("meta.session_id", meta.session_id)
    check_str("meta.session_name", meta.session_name)
    check_str("meta.created_at", meta.created_at)
    check_str("meta.model", meta.model)
    check_opt_str("meta.cwd", meta.cwd)
    check_relation(meta.relation, "meta.relation")


def check_intent(intent: AttachmentIntent) -> None:
    _check_type("intent", intent, AttachmentIntent)
    _check_fields("intent", intent, _INTENT_FIELDS)


def check_create_request(request: SessionStoreCreateRequest) -> None:
    _check_type("request", request, SessionStoreCreateRequest)
    check_id("request.session_id", request.session_id)
    check_relation(request.relation, "request.relation")
    check_str("request.model", request.model)
    check_str("request.provider_id", request.provider_id)
    check_opt_str("request.cwd", request.cwd)
