"""The contract's data model (contract.md §1) as pydantic v2 models with their wire JSON forms (no I/O).

Design rules, each for a reason:

- Models are *strict* (no ``"5"`` -> 5, no ``True`` -> 1, no tuple -> list) but **never range-check**: an
  out-of-range integer such as ``expected_head_revision=-1`` or ``2**63`` must reach ``validation.py`` so
  the store refuses it with ``InvalidRequest`` (contract §0, S35) instead of a pydantic error. Enum fields
  also take their wire strings.
- Opaque JSON (agent frames, model spec, tool state, plugin snapshot, node payload keys, queued payloads,
  ``caused_by``, prompt usage, protocol options) is typed ``Any`` and kept by reference, exactly as given:
  no int to float coercion, ``-0.0`` stays ``-0.0``. ``validation.py`` checks it is encodable before any
  write.
- ``to_wire()`` returns the JSON form lash's serde writes (§1; needed bit-for-bit by ``turn_commit_hash``):
  enums as wire strings, bytes as integer arrays, omit-if-None keys absent. Results share opaque values with
  the model, so treat them as read-only. ``from_wire(obj)`` is its inverse for stored records: a malformed
  object raises ``BackendError`` naming the record kind; unknown keys are ignored (as serde does), except on
  ``SessionNodeRecord`` which keeps every extra key verbatim. Both are hand-written because a commit is
  encoded on every turn and stored records are decoded on every read.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)

from sessionfence.canonical import canonical, scrub_volatile, sha256_hex
from sessionfence.errors import BackendError

__all__ = [
    "GRAPH_COMMIT_DELTA_TYPES",
    "ActivePath",
    "AttachmentId",
    "AttachmentIntent",
    "AttachmentManifestEntry",
    "BlobRef",
    "DeliveryPolicy",
    "DurabilityTier",
    "FullGraph",
    "GcReport",
    "GraphAppend",
    "GraphCommitDelta",
    "GraphReplaceFull",
    "GraphUnchanged",
    "HydratedSessionCheckpoint",
    "MergeKey",
    "PersistedSessionConfig",
    "PersistedSessionRead",
    "PersistedTurnState",
    "QueuedWorkBatch",
    "QueuedWorkBatchDraft",
    "QueuedWorkClaim",
    "QueuedWorkClaimBoundary",
    "QueuedWorkCompletion",
    "QueuedWorkItem",
    "RuntimeCommit",
    "RuntimeCommitResult",
    "RuntimeTurnCommitStamp",
    "SessionCheckpoint",
    "SessionExecutionLease",
    "SessionExecutionLeaseCompletion",
    "SessionExecutionLeaseFence",
    "SessionGraph",
    "SessionHeadMeta",
    "SessionMeta",
    "SessionNodeRecord",
    "SessionPickerInfo",
    "SessionReadScope",
    "SessionRelation",
    "SessionStoreCreateRequest",
    "SlotPolicy",
    "TokenLedgerEntry",
    "TokenUsage",
    "VacuumReport",
    "graph_commit_delta_from_wire",
]

BlobRef = str
AttachmentId = str


# ----------------------------------------------------------------------------------------------------------
# Wire decoding helpers: every failure is a BackendError because from_wire only ever sees stored records.


_M = TypeVar("_M", bound=BaseModel)


def _build(cls: type[_M], /, **values: Any) -> _M:
    """Construct a decoded record. The helpers below already checked the types, so this validation only
    re-asserts model invariants; it is also faster than ``model_construct``, which runs in Python."""
    try:
        return cls.model_validate(values)
    except (ValidationError, TypeError) as err:
        raise BackendError(f"malformed {cls.__name__} record: {err}") from None


def _malformed(kind: str, detail: str) -> BackendError:
    return BackendError(f"malformed {kind} record: {detail}")


def _obj(value: Any, kind: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _malformed(kind, f"expected a JSON object, got {type(value).__name__}")
    return value


def _get(d: dict[str, Any], key: str, kind: str) -> Any:
    try:
        return d[key]
    except KeyError:
        raise _malformed(kind, f"missing `{key}`") from None


def _str(d: dict[str, Any], key: str, kind: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if type(value) is not str:
        raise _malformed(kind, f"`{key}` must be a string" if key in d else f"missing `{key}`")
    return value


def _opt_str(d: dict[str, Any], key: str, kind: str) -> str | None:
    value = d.get(key)
    if value is None or type(value) is str:
        return value
    raise _malformed(kind, f"`{key}` must be a string or null")


def _int(d: dict[str, Any], key: str, kind: str, default: int | None = None) -> int:
    value = d.get(key, default)
    if type(value) is not int:
        raise _malformed(kind, f"`{key}` must be an integer" if key in d else f"missing `{key}`")
    return value


def _opt_int(d: dict[str, Any], key: str, kind: str) -> int | None:
    value = d.get(key)
    if value is None or type(value) is int:
        return value
    raise _malformed(kind, f"`{key}` must be an integer or null")


def _list(d: dict[str, Any], key: str, kind: str, *, required: bool = True) -> list[Any]:
    if key not in d and not required:
        return []
    value = _get(d, key, kind)
    if type(value) is not list:
        raise _malformed(kind, f"`{key}` must be an array")
    return value


def _str_list(d: dict[str, Any], key: str, kind: str) -> list[str]:
    values = _list(d, key, kind)
    for value in values:
        if type(value) is not str:
            raise _malformed(kind, f"`{key}` must hold strings")
    return list(values)


def _bytes_from_wire(value: Any, kind: str, key: str) -> bytes | None:
    if value is None:
        return None
    if type(value) is not list:
        raise _malformed(kind, f"`{key}` must be an array of bytes or null")
    try:
        return bytes(value)
    except (TypeError, ValueError):
        raise _malformed(kind, f"`{key}` must hold integers 0..255") from None


# ----------------------------------------------------------------------------------------------------------
# Base classes


class _WireEnum(StrEnum):
    """A ``str`` enum whose values are the contract's wire strings (§1.2)."""

    def to_wire(self) -> str:
        return self.value

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        try:
            return cls(obj)
        except ValueError:
            raise _malformed(cls.__name__, f"unknown value {obj!r}") from None


class _Model(BaseModel):
    """Strict types, no range checks (see the module docstring), no unknown keyword arguments."""

    model_config = ConfigDict(strict=True, extra="forbid", protected_namespaces=())

    def to_wire(self) -> Any:
        raise NotImplementedError

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------
# Enumerations (§1.2)


class DurabilityTier(_WireEnum):
    INLINE = "inline"
    DURABLE = "durable"


class DeliveryPolicy(_WireEnum):
    EARLIEST_SAFE_BOUNDARY = "earliest_safe_boundary"
    AFTER_CURRENT_TURN_COMMIT = "after_current_turn_commit"


class SlotPolicy(_WireEnum):
    JOIN = "join"
    EXCLUSIVE = "exclusive"


class QueuedWorkClaimBoundary(_WireEnum):
    ACTIVE_TURN_CHECKPOINT = "active_turn_checkpoint"
    IDLE = "idle"


# Enum-typed fields accept the enum or its wire string, even in strict models.
_Delivery = Annotated[DeliveryPolicy, Strict(False)]
_Slot = Annotated[SlotPolicy, Strict(False)]


class MergeKey(_Model):
    """``never`` / ``payload_default`` / ``group(label)``; frozen, so equal keys compare and hash equal."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["never", "payload_default", "group"]
    label: str | None = None

    @model_validator(mode="after")
    def _label_iff_group(self) -> Self:
        if (self.kind == "group") != (self.label is not None):
            raise ValueError("MergeKey needs a label exactly when kind is 'group'")
        return self

    @classmethod
    def never(cls) -> MergeKey:
        return _NEVER

    @classmethod
    def payload_default(cls) -> MergeKey:
        return _PAYLOAD_DEFAULT

    @classmethod
    def group(cls, label: str) -> MergeKey:
        return cls(kind="group", label=label)

    def to_wire(self) -> str | dict[str, str]:
        if self.label is not None:
            return {"group": self.label}
        return self.kind

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        if obj == "never" or obj == "payload_default":
            return _build(cls, kind=obj, label=None)
        if type(obj) is dict and len(obj) == 1 and type(obj.get("group")) is str:
            return _build(cls, kind="group", label=obj["group"])
        raise _malformed("MergeKey", f"unknown value {obj!r}")


_NEVER = MergeKey(kind="never")
_PAYLOAD_DEFAULT = MergeKey(kind="payload_default")


# ----------------------------------------------------------------------------------------------------------
# Read scopes (§1.2: no wire form in lash; sessionfence's is serde's externally tagged style)


class FullGraph(_Model):
    model_config = ConfigDict(frozen=True)

    def to_wire(self) -> str:
        return "FullGraph"

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        if obj != "FullGraph":
            raise _malformed("FullGraph", f"unknown value {obj!r}")
        return cls()


class ActivePath(_Model):
    model_config = ConfigDict(frozen=True)

    leaf_node_id: str | None = None

    def __init__(self, leaf_node_id: str | None = None) -> None:
        BaseModel.__init__(self, leaf_node_id=leaf_node_id)

    def to_wire(self) -> dict[str, Any]:
        return {"ActivePath": {"leaf_node_id": self.leaf_node_id}}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        body = _obj(_get(_obj(obj, "ActivePath"), "ActivePath", "ActivePath"), "ActivePath")
        return cls(_opt_str(body, "leaf_node_id", "ActivePath"))


SessionReadScope = FullGraph | ActivePath


# ----------------------------------------------------------------------------------------------------------
# Relations and graph records (§1.2, §1.4)


class SessionRelation(_Model):
    """``root()`` or ``child(parent, caused_by)``; ``parent_session_id`` is None for a root."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["root", "child"] = "root"
    parent_session_id: str | None = None
    caused_by: Any = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.kind == "child" and self.parent_session_id is None:
            raise ValueError("a child relation needs parent_session_id")
        if self.kind == "root" and (self.parent_session_id is not None or self.caused_by is not None):
            raise ValueError("a root relation has no parent_session_id or caused_by")
        return self

    @classmethod
    def root(cls) -> SessionRelation:
        return _ROOT

    @classmethod
    def child(cls, parent_session_id: str, caused_by: Any = None) -> SessionRelation:
        return cls(kind="child", parent_session_id=parent_session_id, caused_by=caused_by)

    def to_wire(self) -> dict[str, Any]:
        if self.kind == "root":
            return {"kind": "root"}
        wire: dict[str, Any] = {"kind": "child", "parent_session_id": self.parent_session_id}
        if self.caused_by is not None:
            wire["caused_by"] = self.caused_by
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        d = _obj(obj, "SessionRelation")
        kind = d.get("kind", "root")
        if kind == "root":
            return _build(cls, kind="root", parent_session_id=None, caused_by=None)
        if kind == "child":
            return _build(
                cls,
                kind="child",
                parent_session_id=_str(d, "parent_session_id", "SessionRelation"),
                caused_by=d.get("caused_by"),
            )
        raise _malformed("SessionRelation", f"unknown kind {kind!r}")


_ROOT = SessionRelation()


class SessionNodeRecord(_Model):
    """A graph node: the fields the store reads are typed, every other key (``kind``, ``event``,
    ``plugin_type``, ``body``, ...) is kept verbatim as a pydantic extra and round-trips unchanged."""

    model_config = ConfigDict(extra="allow")

    node_id: str
    parent_node_id: str | None = None
    agent_frame_id: str | None = None
    caused_by: Any = None
    timestamp: str

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"node_id": self.node_id}
        if self.parent_node_id is not None:
            wire["parent_node_id"] = self.parent_node_id
        if self.caused_by is not None:
            wire["caused_by"] = self.caused_by
        if self.agent_frame_id is not None:
            wire["agent_frame_id"] = self.agent_frame_id
        wire["timestamp"] = self.timestamp
        extra = self.__pydantic_extra__
        if extra:
            wire.update(extra)
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        kind = "SessionNodeRecord"
        d = _obj(obj, kind)
        extra = dict(d)
        node_id = extra.pop("node_id", None)
        if type(node_id) is not str:
            raise _malformed(kind, "`node_id` must be a string")
        timestamp = extra.pop("timestamp", None)
        if type(timestamp) is not str:
            raise _malformed(kind, "`timestamp` must be a string")
        parent = extra.pop("parent_node_id", None)
        frame = extra.pop("agent_frame_id", None)
        if not (parent is None or type(parent) is str) or not (frame is None or type(frame) is str):
            raise _malformed(kind, "`parent_node_id` and `agent_frame_id` must be strings or null")
        caused_by = extra.pop("caused_by", None)
        return _build(
            cls,
            node_id=node_id,
            parent_node_id=parent,
            agent_frame_id=frame,
            caused_by=caused_by,
            timestamp=timestamp,
            **extra,
        )


class SessionGraph(_Model):
    nodes: list[SessionNodeRecord] = Field(default_factory=list)
    leaf_node_id: str | None = None

    def __init__(self, nodes: list[SessionNodeRecord] | None = None, leaf_node_id: str | None = None) -> None:
        BaseModel.__init__(self, nodes=[] if nodes is None else nodes, leaf_node_id=leaf_node_id)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"nodes": [node.to_wire() for node in self.nodes]}
        if self.leaf_node_id is not None:
            wire["leaf_node_id"] = self.leaf_node_id
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        d = _obj(obj, "SessionGraph")
        return _build(
            cls,
            nodes=[SessionNodeRecord.from_wire(n) for n in _list(d, "nodes", "SessionGraph", required=False)],
            leaf_node_id=_opt_str(d, "leaf_node_id", "SessionGraph"),
        )


# ----------------------------------------------------------------------------------------------------------
# Graph commit deltas (§1.2, §1.8). Rust's ``GraphCommitDelta::leaf_node_id()`` is ``delta_leaf_node_id()``
# here because Unchanged and Append have a *field* of that name; GraphReplaceFull also exposes a read-only
# ``leaf_node_id`` property, so ``delta.leaf_node_id`` reads the same on all three.


class _GraphDelta(_Model):
    TAG: ClassVar[str]

    def delta_leaf_node_id(self) -> str | None:
        raise NotImplementedError

    @classmethod
    def _body(cls, obj: Any) -> dict[str, Any]:
        d = _obj(obj, "GraphCommitDelta")
        if len(d) != 1 or cls.TAG not in d:
            raise _malformed("GraphCommitDelta", f"expected a single `{cls.TAG}` key, got {sorted(d)!r}")
        return _obj(d[cls.TAG], "GraphCommitDelta")


class GraphUnchanged(_GraphDelta):
    TAG: ClassVar[str] = "Unchanged"

    leaf_node_id: str | None

    def __init__(self, leaf_node_id: str | None) -> None:
        BaseModel.__init__(self, leaf_node_id=leaf_node_id)

    def delta_leaf_node_id(self) -> str | None:
        return self.leaf_node_id

    def to_wire(self) -> dict[str, Any]:
        return {"Unchanged": {"leaf_node_id": self.leaf_node_id}}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        body = cls._body(obj)
        return _build(cls, leaf_node_id=_opt_str(body, "leaf_node_id", "GraphCommitDelta"))


class GraphAppend(_GraphDelta):
    TAG: ClassVar[str] = "Append"

    nodes: list[SessionNodeRecord]
    leaf_node_id: str | None

    def __init__(self, nodes: list[SessionNodeRecord], leaf_node_id: str | None) -> None:
        BaseModel.__init__(self, nodes=nodes, leaf_node_id=leaf_node_id)

    def delta_leaf_node_id(self) -> str | None:
        return self.leaf_node_id

    def to_wire(self) -> dict[str, Any]:
        return {"Append": {"nodes": [n.to_wire() for n in self.nodes], "leaf_node_id": self.leaf_node_id}}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        body = cls._body(obj)
        return _build(
            cls,
            nodes=[SessionNodeRecord.from_wire(n) for n in _list(body, "nodes", "GraphCommitDelta")],
            leaf_node_id=_opt_str(body, "leaf_node_id", "GraphCommitDelta"),
        )


class GraphReplaceFull(_GraphDelta):
    TAG: ClassVar[str] = "ReplaceFull"

    graph: SessionGraph

    def __init__(self, graph: SessionGraph) -> None:
        BaseModel.__init__(self, graph=graph)

    @property
    def leaf_node_id(self) -> str | None:
        return self.graph.leaf_node_id

    def delta_leaf_node_id(self) -> str | None:
        return self.graph.leaf_node_id

    def to_wire(self) -> dict[str, Any]:
        return {"ReplaceFull": self.graph.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        return _build(cls, graph=SessionGraph.from_wire(cls._body(obj)))


def _delta_tag(value: Any) -> str | None:
    if isinstance(value, _GraphDelta):
        return value.TAG
    if isinstance(value, dict):  # field-named dicts, for model_validate
        if "graph" in value:
            return "ReplaceFull"
        return "Append" if "nodes" in value else "Unchanged"
    return None


GraphCommitDelta = Annotated[
    Annotated[GraphUnchanged, Tag("Unchanged")]
    | Annotated[GraphAppend, Tag("Append")]
    | Annotated[GraphReplaceFull, Tag("ReplaceFull")],
    Discriminator(_delta_tag),
]
GRAPH_COMMIT_DELTA_TYPES = (GraphUnchanged, GraphAppend, GraphReplaceFull)
_DELTAS_BY_TAG: dict[str, type[_GraphDelta]] = {t.TAG: t for t in GRAPH_COMMIT_DELTA_TYPES}


def graph_commit_delta_from_wire(obj: Any) -> GraphUnchanged | GraphAppend | GraphReplaceFull:
    """Decode any externally tagged delta (``Unchanged``, ``Append`` or ``ReplaceFull``)."""
    d = _obj(obj, "GraphCommitDelta")
    if len(d) == 1:
        tag = next(iter(d))
        if tag == "Unchanged":
            return GraphUnchanged.from_wire(d)
        if tag == "Append":
            return GraphAppend.from_wire(d)
        if tag == "ReplaceFull":
            return GraphReplaceFull.from_wire(d)
    raise _malformed("GraphCommitDelta", f"unknown variant {sorted(d)!r}")


# ----------------------------------------------------------------------------------------------------------
# Config, usage, checkpoints (§1.5 - §1.7)


class PersistedSessionConfig(_Model):
    provider_id: str
    model: Any

    def __init__(self, provider_id: str, model: Any) -> None:
        BaseModel.__init__(self, provider_id=provider_id, model=model)

    def to_wire(self) -> dict[str, Any]:
        return {"provider_id": self.provider_id, "model": self.model}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        d = _obj(obj, "PersistedSessionConfig")
        return _build(
            cls,
            provider_id=_str(d, "provider_id", "PersistedSessionConfig"),
            model=_get(d, "model", "PersistedSessionConfig"),
        )


class TokenUsage(_Model):
    """Signed 64-bit counters (they may be negative, contract §0)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    def __init__(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        BaseModel.__init__(
            self,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached_input_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    def total(self) -> int:
        """Cached input is excluded: it is a subset of input already counted (lash's definition)."""
        return self.input_tokens + self.output_tokens + self.reasoning_tokens

    def to_wire(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "TokenUsage"
        d = _obj(obj, k)
        return _build(
            cls,
            input_tokens=_int(d, "input_tokens", k),
            output_tokens=_int(d, "output_tokens", k),
            cached_input_tokens=_int(d, "cached_input_tokens", k),
            reasoning_tokens=_int(d, "reasoning_tokens", k, 0),
        )


class TokenLedgerEntry(_Model):
    source: str
    model: str
    usage: TokenUsage

    def __init__(self, source: str, model: str, usage: TokenUsage) -> None:
        BaseModel.__init__(self, source=source, model=model, usage=usage)

    def to_wire(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "usage": self.usage.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "TokenLedgerEntry"
        d = _obj(obj, k)
        return _build(
            cls,
            source=_str(d, "source", k),
            model=_str(d, "model", k),
            usage=TokenUsage.from_wire(_get(d, "usage", k)),
        )


def _default_protocol_turn_options() -> Any:
    return {"payload": {}}


class PersistedTurnState(_Model):
    turn_index: int = 0
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    last_prompt_usage: Any = None
    protocol_turn_options: Any = Field(default_factory=_default_protocol_turn_options)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"turn_index": self.turn_index, "token_usage": self.token_usage.to_wire()}
        if self.last_prompt_usage is not None:
            wire["last_prompt_usage"] = self.last_prompt_usage
        wire["protocol_turn_options"] = self.protocol_turn_options
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "PersistedTurnState"
        d = _obj(obj, k)
        usage = d.get("token_usage")
        return _build(
            cls,
            turn_index=_int(d, "turn_index", k),
            token_usage=TokenUsage() if usage is None else TokenUsage.from_wire(usage),
            last_prompt_usage=d.get("last_prompt_usage"),
            protocol_turn_options=d["protocol_turn_options"]
            if "protocol_turn_options" in d
            else _default_protocol_turn_options(),
        )


class HydratedSessionCheckpoint(_Model):
    """What commits carry and loads return; on the wire every key is present (None as ``null``)."""

    turn_state: PersistedTurnState = Field(default_factory=PersistedTurnState)
    tool_state_ref: BlobRef | None = None
    tool_state: Any = None
    plugin_snapshot_ref: BlobRef | None = None
    plugin_snapshot: Any = None
    plugin_snapshot_revision: int | None = None
    execution_state_ref: BlobRef | None = None
    execution_state: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        es = self.execution_state
        return {
            "turn_state": self.turn_state.to_wire(),
            "tool_state_ref": self.tool_state_ref,
            "tool_state": self.tool_state,
            "plugin_snapshot_ref": self.plugin_snapshot_ref,
            "plugin_snapshot": self.plugin_snapshot,
            "plugin_snapshot_revision": self.plugin_snapshot_revision,
            "execution_state_ref": self.execution_state_ref,
            "execution_state": None if es is None else list(es),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "HydratedSessionCheckpoint"
        d = _obj(obj, k)
        return _build(
            cls,
            turn_state=PersistedTurnState.from_wire(_get(d, "turn_state", k)),
            tool_state_ref=_opt_str(d, "tool_state_ref", k),
            tool_state=d.get("tool_state"),
            plugin_snapshot_ref=_opt_str(d, "plugin_snapshot_ref", k),
            plugin_snapshot=d.get("plugin_snapshot"),
            plugin_snapshot_revision=_opt_int(d, "plugin_snapshot_revision", k),
            execution_state_ref=_opt_str(d, "execution_state_ref", k),
            execution_state=_bytes_from_wire(d.get("execution_state"), k, "execution_state"),
        )


class SessionCheckpoint(_Model):
    """The manifest: refs only, no bodies; its canonical bytes name the checkpoint (§2.3.1)."""

    turn_state: PersistedTurnState = Field(default_factory=PersistedTurnState)
    tool_state_ref: BlobRef | None = None
    plugin_snapshot_ref: BlobRef | None = None
    plugin_snapshot_revision: int | None = None
    execution_state_ref: BlobRef | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"turn_state": self.turn_state.to_wire()}
        if self.tool_state_ref is not None:
            wire["tool_state_ref"] = self.tool_state_ref
        if self.plugin_snapshot_ref is not None:
            wire["plugin_snapshot_ref"] = self.plugin_snapshot_ref
        if self.plugin_snapshot_revision is not None:
            wire["plugin_snapshot_revision"] = self.plugin_snapshot_revision
        if self.execution_state_ref is not None:
            wire["execution_state_ref"] = self.execution_state_ref
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "SessionCheckpoint"
        d = _obj(obj, k)
        turn_state = d.get("turn_state")
        return _build(
            cls,
            turn_state=PersistedTurnState()
            if turn_state is None
            else PersistedTurnState.from_wire(turn_state),
            tool_state_ref=_opt_str(d, "tool_state_ref", k),
            plugin_snapshot_ref=_opt_str(d, "plugin_snapshot_ref", k),
            plugin_snapshot_revision=_opt_int(d, "plugin_snapshot_revision", k),
            execution_state_ref=_opt_str(d, "execution_state_ref", k),
        )


# ----------------------------------------------------------------------------------------------------------
# Heads and reads (§1.6)


class SessionHeadMeta(_Model):
    session_id: str = "root"
    head_revision: int = 0
    config: PersistedSessionConfig
    agent_frames: list[Any] = Field(default_factory=list)
    current_agent_frame_id: str = ""
    checkpoint_ref: BlobRef | None = None
    leaf_node_id: str | None = None
    graph_node_count: int = 0
    token_ledger: list[TokenLedgerEntry] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "session_id": self.session_id,
            "head_revision": self.head_revision,
            "config": self.config.to_wire(),
            "agent_frames": list(self.agent_frames),
        }
        if self.current_agent_frame_id:
            wire["current_agent_frame_id"] = self.current_agent_frame_id
        if self.checkpoint_ref is not None:
            wire["checkpoint_ref"] = self.checkpoint_ref
        if self.leaf_node_id is not None:
            wire["leaf_node_id"] = self.leaf_node_id
        wire["graph_node_count"] = self.graph_node_count
        if self.token_ledger:
            wire["token_ledger"] = [e.to_wire() for e in self.token_ledger]
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "SessionHeadMeta"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k, "root"),
            head_revision=_int(d, "head_revision", k, 0),
            config=PersistedSessionConfig.from_wire(_get(d, "config", k)),
            agent_frames=list(_list(d, "agent_frames", k, required=False)),
            current_agent_frame_id=_str(d, "current_agent_frame_id", k, ""),
            checkpoint_ref=_opt_str(d, "checkpoint_ref", k),
            leaf_node_id=_opt_str(d, "leaf_node_id", k),
            graph_node_count=_int(d, "graph_node_count", k, 0),
            token_ledger=[TokenLedgerEntry.from_wire(e) for e in _list(d, "token_ledger", k, required=False)],
        )


class PersistedSessionRead(_Model):
    """What ``load_session`` returns. lash gives it no serde form; sessionfence's writes every key."""

    session_id: str
    head_revision: int
    config: PersistedSessionConfig
    agent_frames: list[Any] = Field(default_factory=list)
    current_agent_frame_id: str = ""
    graph: SessionGraph = Field(default_factory=SessionGraph)
    checkpoint_ref: BlobRef | None = None
    checkpoint: HydratedSessionCheckpoint | None = None
    token_ledger: list[TokenLedgerEntry] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "head_revision": self.head_revision,
            "config": self.config.to_wire(),
            "agent_frames": list(self.agent_frames),
            "current_agent_frame_id": self.current_agent_frame_id,
            "graph": self.graph.to_wire(),
            "checkpoint_ref": self.checkpoint_ref,
            "checkpoint": None if self.checkpoint is None else self.checkpoint.to_wire(),
            "token_ledger": [e.to_wire() for e in self.token_ledger],
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "PersistedSessionRead"
        d = _obj(obj, k)
        checkpoint = d.get("checkpoint")
        return _build(
            cls,
            session_id=_str(d, "session_id", k, "root"),
            head_revision=_int(d, "head_revision", k, 0),
            config=PersistedSessionConfig.from_wire(_get(d, "config", k)),
            agent_frames=list(_list(d, "agent_frames", k, required=False)),
            current_agent_frame_id=_str(d, "current_agent_frame_id", k, ""),
            graph=SessionGraph.from_wire(_get(d, "graph", k)),
            checkpoint_ref=_opt_str(d, "checkpoint_ref", k),
            checkpoint=None if checkpoint is None else HydratedSessionCheckpoint.from_wire(checkpoint),
            token_ledger=[TokenLedgerEntry.from_wire(e) for e in _list(d, "token_ledger", k, required=False)],
        )


# ----------------------------------------------------------------------------------------------------------
# Session execution leases (§1.9)


class _LeaseKey(_Model):
    session_id: str
    owner_id: str
    lease_token: str
    fencing_token: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "owner_id": self.owner_id,
            "lease_token": self.lease_token,
            "fencing_token": self.fencing_token,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = cls.__name__
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            owner_id=_str(d, "owner_id", k),
            lease_token=_str(d, "lease_token", k),
            fencing_token=_int(d, "fencing_token", k),
        )


class SessionExecutionLeaseFence(_LeaseKey):
    """What a commit or claim presents to prove it still holds the session lane."""


class SessionExecutionLeaseCompletion(_LeaseKey):
    """What releases the lane; a mismatch is a silent no-op, so a stale release cannot free a successor."""

    @classmethod
    def from_lease(cls, lease: SessionExecutionLease) -> SessionExecutionLeaseCompletion:
        return lease.completion()


class SessionExecutionLease(_Model):
    session_id: str
    owner_id: str
    lease_token: str
    fencing_token: int
    claimed_at_epoch_ms: int
    expires_at_epoch_ms: int

    def fence(self) -> SessionExecutionLeaseFence:
        return SessionExecutionLeaseFence(
            session_id=self.session_id,
            owner_id=self.owner_id,
            lease_token=self.lease_token,
            fencing_token=self.fencing_token,
        )

    def completion(self) -> SessionExecutionLeaseCompletion:
        return SessionExecutionLeaseCompletion(
            session_id=self.session_id,
            owner_id=self.owner_id,
            lease_token=self.lease_token,
            fencing_token=self.fencing_token,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "owner_id": self.owner_id,
            "lease_token": self.lease_token,
            "fencing_token": self.fencing_token,
            "claimed_at_epoch_ms": self.claimed_at_epoch_ms,
            "expires_at_epoch_ms": self.expires_at_epoch_ms,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "SessionExecutionLease"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            owner_id=_str(d, "owner_id", k),
            lease_token=_str(d, "lease_token", k),
            fencing_token=_int(d, "fencing_token", k),
            claimed_at_epoch_ms=_int(d, "claimed_at_epoch_ms", k),
            expires_at_epoch_ms=_int(d, "expires_at_epoch_ms", k),
        )


# ----------------------------------------------------------------------------------------------------------
# Queued work (§1.10)


class QueuedWorkCompletion(_Model):
    session_id: str
    claim_id: str
    lease_token: str
    batch_ids: list[str]

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "claim_id": self.claim_id,
            "lease_token": self.lease_token,
            "batch_ids": list(self.batch_ids),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "QueuedWorkCompletion"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            claim_id=_str(d, "claim_id", k),
            lease_token=_str(d, "lease_token", k),
            batch_ids=_str_list(d, "batch_ids", k),
        )


class QueuedWorkBatchDraft(_Model):
    session_id: str
    source_key: str | None = None
    delivery_policy: _Delivery
    slot_policy: _Slot
    merge_key: MergeKey = Field(default_factory=MergeKey.never)
    available_at_ms: int = 0
    payloads: list[Any]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"session_id": self.session_id}
        if self.source_key is not None:
            wire["source_key"] = self.source_key
        wire["delivery_policy"] = self.delivery_policy.value
        wire["slot_policy"] = self.slot_policy.value
        wire["merge_key"] = self.merge_key.to_wire()
        wire["available_at_ms"] = self.available_at_ms
        wire["payloads"] = list(self.payloads)
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "QueuedWorkBatchDraft"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            source_key=_opt_str(d, "source_key", k),
            delivery_policy=DeliveryPolicy.from_wire(_get(d, "delivery_policy", k)),
            slot_policy=SlotPolicy.from_wire(_get(d, "slot_policy", k)),
            merge_key=MergeKey.from_wire(_get(d, "merge_key", k)),
            available_at_ms=_int(d, "available_at_ms", k),
            payloads=list(_list(d, "payloads", k)),
        )


class QueuedWorkItem(_Model):
    item_id: str
    payload: Any

    def to_wire(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "payload": self.payload}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        d = _obj(obj, "QueuedWorkItem")
        return _build(
            cls, item_id=_str(d, "item_id", "QueuedWorkItem"), payload=_get(d, "payload", "QueuedWorkItem")
        )


class QueuedWorkBatch(_Model):
    """A stored batch as callers see it; claim state is internal and never part of it."""

    batch_id: str
    session_id: str
    enqueue_seq: int
    source_key: str | None = None
    delivery_policy: _Delivery
    slot_policy: _Slot
    merge_key: MergeKey = Field(default_factory=MergeKey.never)
    available_at_ms: int
    enqueued_at_ms: int
    items: list[QueuedWorkItem] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "batch_id": self.batch_id,
            "session_id": self.session_id,
            "enqueue_seq": self.enqueue_seq,
        }
        if self.source_key is not None:
            wire["source_key"] = self.source_key
        wire["delivery_policy"] = self.delivery_policy.value
        wire["slot_policy"] = self.slot_policy.value
        wire["merge_key"] = self.merge_key.to_wire()
        wire["available_at_ms"] = self.available_at_ms
        wire["enqueued_at_ms"] = self.enqueued_at_ms
        wire["items"] = [{"item_id": i.item_id, "payload": i.payload} for i in self.items]
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "QueuedWorkBatch"
        d = _obj(obj, k)
        return _build(
            cls,
            batch_id=_str(d, "batch_id", k),
            session_id=_str(d, "session_id", k),
            enqueue_seq=_int(d, "enqueue_seq", k),
            source_key=_opt_str(d, "source_key", k),
            delivery_policy=DeliveryPolicy.from_wire(_get(d, "delivery_policy", k)),
            slot_policy=SlotPolicy.from_wire(_get(d, "slot_policy", k)),
            merge_key=MergeKey.from_wire(_get(d, "merge_key", k)),
            available_at_ms=_int(d, "available_at_ms", k),
            enqueued_at_ms=_int(d, "enqueued_at_ms", k),
            items=[QueuedWorkItem.from_wire(i) for i in _list(d, "items", k)],
        )


class QueuedWorkClaim(_Model):
    session_id: str
    claim_id: str
    owner_id: str
    lease_token: str
    fencing_token: int
    claimed_at_epoch_ms: int
    expires_at_epoch_ms: int
    batches: list[QueuedWorkBatch] = Field(default_factory=list)

    def completion(self) -> QueuedWorkCompletion:
        return QueuedWorkCompletion(
            session_id=self.session_id,
            claim_id=self.claim_id,
            lease_token=self.lease_token,
            batch_ids=[b.batch_id for b in self.batches],
        )

    def is_empty(self) -> bool:
        return all(not b.items for b in self.batches)

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "claim_id": self.claim_id,
            "owner_id": self.owner_id,
            "lease_token": self.lease_token,
            "fencing_token": self.fencing_token,
            "claimed_at_epoch_ms": self.claimed_at_epoch_ms,
            "expires_at_epoch_ms": self.expires_at_epoch_ms,
            "batches": [b.to_wire() for b in self.batches],
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "QueuedWorkClaim"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            claim_id=_str(d, "claim_id", k),
            owner_id=_str(d, "owner_id", k),
            lease_token=_str(d, "lease_token", k),
            fencing_token=_int(d, "fencing_token", k),
            claimed_at_epoch_ms=_int(d, "claimed_at_epoch_ms", k),
            expires_at_epoch_ms=_int(d, "expires_at_epoch_ms", k),
            batches=[QueuedWorkBatch.from_wire(b) for b in _list(d, "batches", k)],
        )


# ----------------------------------------------------------------------------------------------------------
# Commits (§1.8, §2.4)


class RuntimeTurnCommitStamp(_Model):
    session_id: str
    turn_id: str
    turn_commit_hash: str

    def __init__(self, session_id: str, turn_id: str, turn_commit_hash: str) -> None:
        BaseModel.__init__(self, session_id=session_id, turn_id=turn_id, turn_commit_hash=turn_commit_hash)

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "turn_commit_hash": self.turn_commit_hash,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "RuntimeTurnCommitStamp"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            turn_id=_str(d, "turn_id", k),
            turn_commit_hash=_str(d, "turn_commit_hash", k),
        )


class RuntimeCommitResult(_Model):
    head_revision: int
    checkpoint_ref: BlobRef
    manifest: SessionCheckpoint

    def __init__(self, head_revision: int, checkpoint_ref: BlobRef, manifest: SessionCheckpoint) -> None:
        BaseModel.__init__(
            self, head_revision=head_revision, checkpoint_ref=checkpoint_ref, manifest=manifest
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "head_revision": self.head_revision,
            "checkpoint_ref": self.checkpoint_ref,
            "manifest": self.manifest.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "RuntimeCommitResult"
        d = _obj(obj, k)
        return _build(
            cls,
            head_revision=_int(d, "head_revision", k),
            checkpoint_ref=_str(d, "checkpoint_ref", k),
            manifest=SessionCheckpoint.from_wire(_get(d, "manifest", k)),
        )


class RuntimeCommit(_Model):
    """One atomic turn commit. ``expected_head_revision`` has no default: None is a blind write."""

    session_id: str
    expected_head_revision: int | None
    session_execution_lease: SessionExecutionLeaseFence | None = None
    release_session_execution_lease: SessionExecutionLeaseCompletion | None = None
    config: PersistedSessionConfig
    agent_frames: list[Any] = Field(default_factory=list)
    current_agent_frame_id: str = ""
    graph: GraphCommitDelta
    checkpoint: HydratedSessionCheckpoint = Field(default_factory=HydratedSessionCheckpoint)
    usage_deltas: list[TokenLedgerEntry] = Field(default_factory=list)
    turn_commit: RuntimeTurnCommitStamp | None = None
    completed_queue_claims: list[QueuedWorkCompletion] = Field(default_factory=list)
    committed_attachment_ids: list[AttachmentId] = Field(default_factory=list)

    # Builders: each returns a modified shallow copy and leaves self untouched.

    def with_turn_commit(self, turn_commit: RuntimeTurnCommitStamp) -> RuntimeCommit:
        return self.model_copy(update={"turn_commit": turn_commit})

    def with_session_execution_lease(self, lease: SessionExecutionLeaseFence) -> RuntimeCommit:
        return self.model_copy(update={"session_execution_lease": lease})

    def releasing_session_execution_lease(self, completion: SessionExecutionLeaseCompletion) -> RuntimeCommit:
        return self.model_copy(update={"release_session_execution_lease": completion})

    def completing_queue_claim(self, completion: QueuedWorkCompletion) -> RuntimeCommit:
        return self.model_copy(update={"completed_queue_claims": [*self.completed_queue_claims, completion]})

    def completing_queue_claims(self, completions: Iterable[QueuedWorkCompletion]) -> RuntimeCommit:
        return self.model_copy(
            update={"completed_queue_claims": [*self.completed_queue_claims, *completions]}
        )

    def with_committed_attachments(self, attachment_ids: Iterable[AttachmentId]) -> RuntimeCommit:
        """Replaces the list (lash's semantics), it does not append."""
        return self.model_copy(update={"committed_attachment_ids": list(attachment_ids)})

    def turn_commit_hash(self) -> str:
        """Contract §2.4: the commit's meaning, blind to CAS revision, leases, ids, leaf and timestamps."""
        wire = self.to_wire()
        wire["expected_head_revision"] = None
        wire["turn_commit"] = None
        wire.pop("session_execution_lease", None)
        wire.pop("release_session_execution_lease", None)
        # An integer array holds nothing to scrub; keeping it out of the walk makes large VM states cheap.
        execution_state = wire["checkpoint"].pop("execution_state")
        scrubbed = scrub_volatile(wire)
        scrubbed["checkpoint"]["execution_state"] = execution_state
        return sha256_hex(canonical(scrubbed))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "session_id": self.session_id,
            "expected_head_revision": self.expected_head_revision,
        }
        if self.session_execution_lease is not None:
            wire["session_execution_lease"] = self.session_execution_lease.to_wire()
        if self.release_session_execution_lease is not None:
            wire["release_session_execution_lease"] = self.release_session_execution_lease.to_wire()
        wire["config"] = {"provider_id": self.config.provider_id, "model": self.config.model}
        wire["agent_frames"] = list(self.agent_frames)
        wire["current_agent_frame_id"] = self.current_agent_frame_id
        wire["graph"] = self.graph.to_wire()
        wire["checkpoint"] = self.checkpoint.to_wire()
        wire["usage_deltas"] = [e.to_wire() for e in self.usage_deltas]
        wire["turn_commit"] = None if self.turn_commit is None else self.turn_commit.to_wire()
        wire["completed_queue_claims"] = [c.to_wire() for c in self.completed_queue_claims]
        wire["committed_attachment_ids"] = list(self.committed_attachment_ids)
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "RuntimeCommit"
        d = _obj(obj, k)
        lease = d.get("session_execution_lease")
        release = d.get("release_session_execution_lease")
        stamp = d.get("turn_commit")
        attachment_ids = _str_list(d, "committed_attachment_ids", k)
        if "expected_head_revision" not in d:
            raise _malformed(k, "missing `expected_head_revision`")
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            expected_head_revision=_opt_int(d, "expected_head_revision", k),
            session_execution_lease=None if lease is None else SessionExecutionLeaseFence.from_wire(lease),
            release_session_execution_lease=None
            if release is None
            else SessionExecutionLeaseCompletion.from_wire(release),
            config=PersistedSessionConfig.from_wire(_get(d, "config", k)),
            agent_frames=list(_list(d, "agent_frames", k)),
            current_agent_frame_id=_str(d, "current_agent_frame_id", k),
            graph=graph_commit_delta_from_wire(_get(d, "graph", k)),
            checkpoint=HydratedSessionCheckpoint.from_wire(_get(d, "checkpoint", k)),
            usage_deltas=[TokenLedgerEntry.from_wire(e) for e in _list(d, "usage_deltas", k)],
            turn_commit=None if stamp is None else RuntimeTurnCommitStamp.from_wire(stamp),
            completed_queue_claims=[
                QueuedWorkCompletion.from_wire(c) for c in _list(d, "completed_queue_claims", k)
            ],
            committed_attachment_ids=attachment_ids,
        )


# ----------------------------------------------------------------------------------------------------------
# Metadata, attachments, reports, factory requests (§1.11, §1.12, §2.16)


class SessionMeta(_Model):
    session_id: str
    session_name: str
    created_at: str
    model: str
    cwd: str | None = None
    relation: SessionRelation = Field(default_factory=SessionRelation.root)

    def __init__(
        self,
        session_id: str,
        session_name: str,
        created_at: str,
        model: str,
        cwd: str | None = None,
        relation: SessionRelation = _ROOT,
    ) -> None:
        BaseModel.__init__(
            self,
            session_id=session_id,
            session_name=session_name,
            created_at=created_at,
            model=model,
            cwd=cwd,
            relation=relation,
        )

    @property
    def parent_session_id(self) -> str | None:
        return self.relation.parent_session_id

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "session_name": self.session_name,
            "created_at": self.created_at,
            "model": self.model,
            "cwd": self.cwd,
            "relation": self.relation.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "SessionMeta"
        d = _obj(obj, k)
        relation = d.get("relation")
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            session_name=_str(d, "session_name", k),
            created_at=_str(d, "created_at", k),
            model=_str(d, "model", k),
            cwd=_opt_str(d, "cwd", k),
            relation=_ROOT if relation is None else SessionRelation.from_wire(relation),
        )


class SessionPickerInfo(_Model):
    session_id: str
    cwd: str | None = None
    relation: SessionRelation = Field(default_factory=SessionRelation.root)
    first_user_message: str = ""
    user_message_count: int = 0

    @property
    def parent_session_id(self) -> str | None:
        return self.relation.parent_session_id

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "cwd": self.cwd,
            "relation": self.relation.to_wire(),
            "first_user_message": self.first_user_message,
            "user_message_count": self.user_message_count,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "SessionPickerInfo"
        d = _obj(obj, k)
        relation = d.get("relation")
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            cwd=_opt_str(d, "cwd", k),
            relation=_ROOT if relation is None else SessionRelation.from_wire(relation),
            first_user_message=_str(d, "first_user_message", k),
            user_message_count=_int(d, "user_message_count", k),
        )


class AttachmentIntent(_Model):
    attachment_id: AttachmentId
    session_id: str
    canonical_uri: str
    intent_at_epoch_ms: int

    def __init__(
        self, attachment_id: AttachmentId, session_id: str, canonical_uri: str, intent_at_epoch_ms: int
    ) -> None:
        BaseModel.__init__(
            self,
            attachment_id=attachment_id,
            session_id=session_id,
            canonical_uri=canonical_uri,
            intent_at_epoch_ms=intent_at_epoch_ms,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "attachment_id": self.attachment_id,
            "session_id": self.session_id,
            "canonical_uri": self.canonical_uri,
            "intent_at_epoch_ms": self.intent_at_epoch_ms,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "AttachmentIntent"
        d = _obj(obj, k)
        return _build(
            cls,
            attachment_id=_str(d, "attachment_id", k),
            session_id=_str(d, "session_id", k),
            canonical_uri=_str(d, "canonical_uri", k),
            intent_at_epoch_ms=_int(d, "intent_at_epoch_ms", k),
        )


class AttachmentManifestEntry(_Model):
    attachment_id: AttachmentId
    session_id: str
    canonical_uri: str
    intent_at_epoch_ms: int
    committed_at_epoch_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "attachment_id": self.attachment_id,
            "session_id": self.session_id,
            "canonical_uri": self.canonical_uri,
            "intent_at_epoch_ms": self.intent_at_epoch_ms,
            "committed_at_epoch_ms": self.committed_at_epoch_ms,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "AttachmentManifestEntry"
        d = _obj(obj, k)
        return _build(
            cls,
            attachment_id=_str(d, "attachment_id", k),
            session_id=_str(d, "session_id", k),
            canonical_uri=_str(d, "canonical_uri", k),
            intent_at_epoch_ms=_int(d, "intent_at_epoch_ms", k),
            committed_at_epoch_ms=_opt_int(d, "committed_at_epoch_ms", k),
        )


class GcReport(_Model):
    root_count: int = 0
    retained_blob_count: int = 0
    deleted_blob_count: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "root_count": self.root_count,
            "retained_blob_count": self.retained_blob_count,
            "deleted_blob_count": self.deleted_blob_count,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        d = _obj(obj, "GcReport")
        return _build(
            cls,
            root_count=_int(d, "root_count", "GcReport"),
            retained_blob_count=_int(d, "retained_blob_count", "GcReport"),
            deleted_blob_count=_int(d, "deleted_blob_count", "GcReport"),
        )


class VacuumReport(_Model):
    removed_node_count: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"removed_node_count": self.removed_node_count}

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        d = _obj(obj, "VacuumReport")
        return _build(cls, removed_node_count=_int(d, "removed_node_count", "VacuumReport"))


class SessionStoreCreateRequest(_Model):
    """Replaces lash's request, whose ``policy.model.id`` is the model string (§2.16)."""

    session_id: str
    relation: SessionRelation
    model: str
    provider_id: str
    cwd: str | None = None

    def __init__(
        self, session_id: str, relation: SessionRelation, model: str, provider_id: str, cwd: str | None = None
    ) -> None:
        BaseModel.__init__(
            self, session_id=session_id, relation=relation, model=model, provider_id=provider_id, cwd=cwd
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "relation": self.relation.to_wire(),
            "model": self.model,
            "provider_id": self.provider_id,
            "cwd": self.cwd,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        k = "SessionStoreCreateRequest"
        d = _obj(obj, k)
        return _build(
            cls,
            session_id=_str(d, "session_id", k),
            relation=SessionRelation.from_wire(_get(d, "relation", k)),
            model=_str(d, "model", k),
            provider_id=_str(d, "provider_id", k),
            cwd=_opt_str(d, "cwd", k),
        )
