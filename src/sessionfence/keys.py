"""Redis key layout of one namespace (pure: no I/O).

Every key of a namespace is ``<prefix>:{<tag>}:<part>`` where ``<tag>`` is the namespace with ``%``, ``{`` and
``}`` percent-encoded. The braces make the tag a Redis Cluster hash tag, so every key of a namespace lives in one
slot and every script may touch all of them. Scripts receive every key they touch in KEYS; dynamic things
(blobs, lease rows, batches, turn records) are fields of fixed hashes rather than keys of their own, and the few
per-session keys of the queue are computed here from arguments the caller already knows.

See docs/keys.md for what each key holds and which operation writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["INDEX_TAG", "NamespaceKeys", "encode_tag", "index_key", "ready_index_key", "ready_version_key"]

INDEX_TAG = "__index__"


def encode_tag(value: str) -> str:
    """Percent-encode the characters that would break a hash tag (``{``/``}``) or the encoding itself."""
    return value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def index_key(prefix: str) -> str:
    """The factory's session index: the only key that lives outside any namespace."""
    return f"{prefix}:{{{INDEX_TAG}}}:sessions"


@dataclass(frozen=True, slots=True)
class NamespaceKeys:
    prefix: str
    namespace: str
    base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{self.prefix}:{{{encode_tag(self.namespace)}}}:")

    def part(self, name: str) -> str:
        return self.base + name

    # -- store core -------------------------------------------------------------------------------------
    @property
    def schema(self) -> str:
        return self.part("schema")

    @property
    def head(self) -> str:
        return self.part("head")

    @property
    def meta(self) -> str:
        return self.part("meta")

    @property
    def nodes(self) -> str:
        return self.part("nodes")

    @property
    def node_order(self) -> str:
        return self.part("node_order")

    @property
    def tombstones(self) -> str:
        return self.part("tombstones")

    @property
    def blobs(self) -> str:
        return self.part("blobs")

    @property
    def ledger(self) -> str:
        return self.part("ledger")

    @property
    def ledger_order(self) -> str:
        return self.part("ledger_order")

    @property
    def turns(self) -> str:
        return self.part("turns")

    @property
    def events(self) -> str:
        return self.part("events")

    @property
    def leases(self) -> str:
        return self.part("leases")

    @property
    def fencing(self) -> str:
        """Session-lease fencing high-water marks: the one key that survives delete_session."""
        return self.part("fencing")

    # -- queued work ------------------------------------------------------------------------------------
    @property
    def q_seq(self) -> str:
        return self.part("q_seq")

    @property
    def q_batches(self) -> str:
        return self.part("q_batches")

    @property
    def q_state(self) -> str:
        return self.part("q_state")

    @property
    def q_source(self) -> str:
        return self.part("q_source")

    @property
    def q_sessions(self) -> str:
        return self.part("q_sessions")

    @property
    def q_claims(self) -> str:
        return self.part("q_claims")

    @property
    def q_srcof(self) -> str:
        return self.part("q_srcof")

    @property
    def q_meta(self) -> str:
        return self.part("q_meta")

    def q_all(self, session_id: str) -> str:
        return self.part("q_all:" + encode_tag(session_id))

    def q_ready(self, session_id: str) -> str:
        return self.part("q_ready:" + encode_tag(session_id))

    def q_delayed(self, session_id: str) -> str:
        return self.part("q_delayed:" + encode_tag(session_id))

    def q_held(self, session_id: str) -> str:
        return self.part("q_held:" + encode_tag(session_id))

    # -- attachment manifest ----------------------------------------------------------------------------
    @property
    def att(self) -> str:
        return self.part("att")

    @property
    def att_committed(self) -> str:
        return self.part("att_committed")

    @property
    def att_uncommitted(self) -> str:
        return self.part("att_uncommitted")

    def fixed(self) -> list[str]:
        """Every fixed-name key of the namespace (per-session queue keys are listed in ``q_sessions``)."""
        return [
            self.schema, self.head, self.meta, self.nodes, self.node_order, self.tombstones, self.blobs,
            self.ledger, self.ledger_order, self.turns, self.events, self.leases, self.fencing, self.q_seq,
            self.q_batches, self.q_state, self.q_source, self.q_sessions, self.q_claims, self.q_srcof, self.q_meta,
            self.att, self.att_committed,
            self.att_uncommitted,
        ]


def ready_index_key(prefix: str) -> str:
    """Worker hint: session id -> when it may next have ready work (ms). Lives beside the factory index."""
    return f"{prefix}:{{{INDEX_TAG}}}:ready"


def ready_version_key(prefix: str) -> str:
    """Worker hint versions: bumped by every signal, so a worker's 'no work here' never erases a newer signal."""
    return f"{prefix}:{{{INDEX_TAG}}}:ready_ver"
