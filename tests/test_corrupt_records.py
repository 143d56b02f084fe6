"""Corrupt records planted by hand (raw Redis commands on the namespace keys of docs/keys.md).

Each corruption must surface as a clear typed error: `BackendError` whose message names the key, or
`UnsupportedRecordSchemaVersion(kind, actual, 1)`; never a crash, a foreign exception or a silent default.
A refused operation changes nothing, other namespaces keep working, and reads of the same namespace that do
not touch the corrupt record keep working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from builders import draft, minimal, node
from keystate import astate
from redisbed import AsyncClient, Backend

from sessionfence import (
    ActivePath,
    AsyncRedisStore,
    AttachmentIntent,
    BackendError,
    DeliveryPolicy,
    FullGraph,
    GraphReplaceFull,
    GraphUnchanged,
    QueuedWorkClaimBoundary,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    SessionGraph,
    SessionMeta,
    SessionRelation,
    SlotPolicy,
    StoreError,
    UnsupportedRecordSchemaVersion,
)
from sessionfence.keys import NamespaceKeys
from sessionfence.models import RuntimeCommit

IDLE = QueuedWorkClaimBoundary.IDLE
EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE
META = SessionMeta("root", "victim", "2026-01-01T00:00:00Z", "m", "/srv", SessionRelation.root())
STAMPED_BASE = minimal("root", turn_index=3, graph=GraphUnchanged("B"))
STAMP = RuntimeTurnCommitStamp("root", "turn-1", STAMPED_BASE.turn_commit_hash())


@dataclass
class Namespace:
    store: AsyncRedisStore
    keys: NamespaceKeys
    lease: SessionExecutionLease
    batch_id: str

    def fenced(self, commit: RuntimeCommit) -> RuntimeCommit:
        return commit.with_session_execution_lease(self.lease.fence())


async def populate(backend: Backend, key_prefix: str, namespace: str) -> Namespace:
    """A namespace holding every kind of record: head, graph, blobs, turn, meta, lease, queue, intent."""
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    lease = await store.try_claim_session_execution_lease("root", "w", 600_000)
    assert lease is not None
    graph = GraphReplaceFull(
        SessionGraph(nodes=[node("A"), node("B", "A"), node("C", "A")], leaf_node_id="B")
    )
    first = minimal("root", graph=graph, tool_state={"generation": 1, "tools": {}})
    await store.commit_runtime_state(first.with_session_execution_lease(lease.fence()))
    await store.commit_runtime_state(
        STAMPED_BASE.with_turn_commit(STAMP).with_session_execution_lease(lease.fence())
    )
    batch = await store.enqueue_queued_work(draft("root", "victim batch", EARLIEST, EXCL))
    await store.enqueue_queued_work(draft("other", "other session batch", EARLIEST, EXCL))
    await store.save_session_meta(META)
    await store.record_intent(AttachmentIntent("att", "root", "sha256:att", 100))
    return Namespace(store, NamespaceKeys(key_prefix, namespace), lease, batch.batch_id)


@pytest.fixture
async def victim(backend: Backend, key_prefix: str, namespace: str) -> Namespace:
    return await populate(backend, key_prefix, namespace)


@pytest.fixture
async def neighbor(backend: Backend, key_prefix: str, namespace: str) -> Namespace:
    return await populate(backend, key_prefix, namespace + "-neighbor")


def raw(backend: Backend) -> AsyncClient:
    return backend.async_client()


async def snapshot(backend: Backend, ns: Namespace) -> dict[bytes, Any]:
    return await astate(raw(backend), ns.keys.base + "*")


async def neighbor_works(ns: Namespace) -> None:
    """A full round of reads and writes on an untouched namespace."""
    store = ns.store
    read = await store.load_session(FullGraph())
    assert read is not None and [n.node_id for n in read.graph.nodes] == ["A", "B", "C"]
    assert read.checkpoint is not None and read.checkpoint.turn_state.turn_index == 3
    assert await store.load_session_meta() == META
    assert [b.batch_id for b in await store.list_queued_work("root")] == [ns.batch_id]
    assert [e.attachment_id for e in await store.list_uncommitted(100)] == ["att"]
    result = await store.commit_runtime_state(ns.fenced(minimal("root", graph=GraphReplaceFull(read.graph))))
    assert result.head_revision == 3
    assert await store.commit_runtime_state(STAMPED_BASE.with_turn_commit(STAMP)) is not None
    claim = await store.claim_ready_queued_work("root", ns.lease.fence(), "q", IDLE, 60_000, 1)
    assert claim is not None and claim.batches[0].batch_id == ns.batch_id
    assert (await store.gc_unreachable()).root_count == 1


async def refuses(
    backend: Backend,
    ns: Namespace,
    op: Callable[[], Awaitable[Any]],
    *,
    key: str | None = None,
    schema: tuple[str, int] | None = None,
    named: bool = True,
) -> StoreError:
    """`op` raises the expected typed error and changes no key of the namespace.

    ``named=False`` skips the check that the message names the key (see
    `test_malformed_records_name_their_key` for why).
    """
    before = await snapshot(backend, ns)
    with pytest.raises(StoreError) as info:
        await op()
    err = info.value
    if schema is not None:
        assert isinstance(err, UnsupportedRecordSchemaVersion), repr(err)
        assert (err.record_kind, err.actual, err.expected) == (*schema, 1)
    else:
        assert type(err) is BackendError, repr(err)
        assert key is not None
        assert key in str(err) or not named, f"{key} not named in {err}"
    assert await snapshot(backend, ns) == before, "a refused operation changed a key"
    return err


def with_version(record: bytes, version: int) -> bytes:
    assert b'"schema_version":1' in record
    return record.replace(b'"schema_version":1', b'"schema_version":%d' % version, 1)


# ---- bad JSON ---------------------------------------------------------------------------------------------


async def test_bad_json_in_meta(backend: Backend, victim: Namespace, neighbor: Namespace) -> None:
    store, k = victim.store, victim.keys
    for bogus in (b"{bad", b"\xff", b"[]", b"42"):
        await raw(backend).set(k.meta, bogus)
        await refuses(backend, victim, store.load_session_meta, key=k.meta)
        await refuses(backend, victim, store.load_picker_info, key=k.meta)
    # Valid JSON of the wrong shape is refused too (the message names the record kind, not the key).
    await raw(backend).set(k.meta, b'{"schema_version":1,"session_id":5}')
    await refuses(backend, victim, store.load_session_meta, key=k.meta, named=False)
    # Reads that do not touch meta still work, and saving a meta repairs the record.
    assert (await store.load_session(FullGraph())) is not None
    assert [b.batch_id for b in await store.list_queued_work("root")] == [victim.batch_id]
    await store.save_session_meta(META)
    assert await store.load_session_meta() == META
    await neighbor_works(neighbor)


async def test_bad_json_in_node(backend: Backend, victim: Namespace, neighbor: Namespace) -> None:
    store, k = victim.store, victim.keys
    stored = await raw(backend).hget(k.nodes, "B")
    assert stored is not None
    prefix = stored[: stored.index(b"{")]
    cases = [
        (prefix + b"{bad", True),
        (b"garbage", True),
        (prefix + b"[1]", False),
        (prefix + b'{"node_id":"B"}', False),
    ]
    for bogus, named in cases:
        await raw(backend).hset(k.nodes, "B", bogus)
        await refuses(backend, victim, lambda: store.load_node("B"), key=k.nodes, named=named)
        await refuses(backend, victim, lambda: store.load_session(FullGraph()), key=k.nodes, named=named)
        await refuses(backend, victim, lambda: store.load_session(ActivePath()), key=k.nodes, named=named)
        # The other branch, the head and single live nodes are still readable.
        path = await store.load_session(ActivePath("C"))
        assert path is not None and [n.node_id for n in path.graph.nodes] == ["A", "C"]
        assert await store.load_node("A") == node("A")
        head = await store.load_session_head_meta()
        assert head is not None and head.graph_node_count == 3
    # Tombstoning the corrupt node hides it from every read; vacuum removes it.
    await store.tombstone_nodes(["B"])
    full = await store.load_session(FullGraph())
    assert full is not None and [n.node_id for n in full.graph.nodes] == ["A", "C"]
    assert await store.load_node("B") is None
    assert (await store.vacuum()).removed_node_count == 1
    await neighbor_works(neighbor)


async def test_empty_stored_values_are_corrupt_not_absent(backend: Backend, victim: Namespace) -> None:
    store, k = victim.store, victim.keys
    await raw(backend).set(k.meta, b"")
    await refuses(backend, victim, store.load_session_meta, key=k.meta)
    await raw(backend).hset(k.nodes, "B", b"")
    await refuses(backend, victim, lambda: store.load_node("B"), key=k.nodes)


async def test_malformed_records_name_their_key(backend: Backend, victim: Namespace) -> None:
    store, k = victim.store, victim.keys
    await raw(backend).set(k.meta, b'{"schema_version":1,"session_id":5}')
    await refuses(backend, victim, store.load_session_meta, key=k.meta)
    stored = await raw(backend).hget(k.nodes, "C")
    assert stored is not None
    await raw(backend).hset(k.nodes, "C", stored[: stored.index(b"{")] + b"[1]")
    await refuses(backend, victim, lambda: store.load_node("C"), key=k.nodes)
    await raw(backend).hset(k.q_batches, victim.batch_id, b'{"schema_version":1,"batch_id":7}')
    await refuses(backend, victim, lambda: store.list_queued_work("root"), key=k.q_batches)


async def test_bad_json_in_batch(backend: Backend, victim: Namespace, neighbor: Namespace) -> None:
    store, k = victim.store, victim.keys
    for bogus, named in ((b"{bad", True), (b"[]", True), (b'{"schema_version":1,"batch_id":7}', False)):
        await raw(backend).hset(k.q_batches, victim.batch_id, bogus)
        await refuses(backend, victim, lambda: store.list_queued_work("root"), key=k.q_batches, named=named)
        await refuses(
            backend, victim, lambda: store.list_pending_queued_work("root"), key=k.q_batches, named=named
        )
        # Another session's queue in the same namespace is unaffected.
        assert [b.session_id for b in await store.list_queued_work("other")] == ["other"]
    await neighbor_works(neighbor)


async def test_claim_of_a_corrupt_batch_changes_nothing(backend: Backend, victim: Namespace) -> None:
    store, k = victim.store, victim.keys
    await raw(backend).hset(k.q_batches, victim.batch_id, b"{bad")
    await refuses(
        backend,
        victim,
        lambda: store.claim_ready_queued_work("root", victim.lease.fence(), "q", IDLE, 1000, 1),
        key=k.q_batches,
    )


async def test_bad_json_in_turn_record(backend: Backend, victim: Namespace, neighbor: Namespace) -> None:
    store, k = victim.store, victim.keys
    (field,) = await raw(backend).hkeys(k.turns)
    replay = STAMPED_BASE.with_turn_commit(STAMP)
    for bogus in (b"{bad", b"17"):
        await raw(backend).hset(k.turns, field, bogus)
        await refuses(backend, victim, lambda: store.commit_runtime_state(replay), key=k.turns)
        await refuses(backend, victim, lambda: store.commit_runtime_state(victim.fenced(replay)), key=k.turns)
    # Valid JSON that is not a turn record is refused by the decoder.
    await raw(backend).hset(
        k.turns,
        field,
        b'{"schema_version":1,"turn_commit_hash":"'
        + STAMP.turn_commit_hash.encode()
        + b'","head_revision":"two"}',
    )
    await refuses(backend, victim, lambda: store.commit_runtime_state(replay), key=k.turns, named=False)
    # Other turns commit normally.
    other = STAMPED_BASE.with_turn_commit(RuntimeTurnCommitStamp("root", "turn-2", "h2"))
    assert (await store.commit_runtime_state(victim.fenced(other))).head_revision == 3
    await neighbor_works(neighbor)


async def test_bad_manifest_and_component_blobs(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    head = await store.load_session_head_meta()
    assert head is not None and head.checkpoint_ref is not None
    await raw(backend).hset(k.blobs, head.checkpoint_ref, b"{not a manifest")
    await refuses(backend, victim, lambda: store.load_session(FullGraph()), key=k.blobs)
    await refuses(backend, victim, store.gc_unreachable, key=k.blobs)
    assert await store.load_session_head_meta() == head
    assert await store.load_node("A") == node("A")

    # A corrupt component body: the read refuses, GC (which never decodes bodies) keeps it.
    tool = minimal("root", tool_state={"generation": 9, "tools": {}})
    result = await store.commit_runtime_state(victim.fenced(tool))
    tool_ref = result.manifest.tool_state_ref
    assert tool_ref is not None
    await raw(backend).hset(k.blobs, tool_ref, b"\xff\xfe not json")
    await refuses(backend, victim, lambda: store.load_session(FullGraph()), key=k.blobs)
    report = await store.gc_unreachable()
    assert (report.root_count, report.retained_blob_count) == (1, 2)
    assert await raw(backend).hexists(k.blobs, tool_ref)
    await neighbor_works(neighbor)


# ---- unknown schema_version -------------------------------------------------------------------------------


async def test_unknown_schema_version_in_meta(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    stored = await raw(backend).get(k.meta)
    assert stored is not None
    await raw(backend).set(k.meta, with_version(stored, 7))
    await refuses(backend, victim, store.load_session_meta, schema=("session_meta", 7))
    await refuses(backend, victim, store.load_picker_info, schema=("session_meta", 7))
    # A meta without any schema_version is corrupt, not silently version 1.
    await raw(backend).set(k.meta, stored.replace(b'"schema_version":1,', b""))
    await refuses(backend, victim, store.load_session_meta, key=k.meta)
    assert await store.load_session(FullGraph()) is not None
    await neighbor_works(neighbor)


async def test_unknown_schema_version_in_head(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    await raw(backend).hset(k.head, "schema_version", "7")
    await refuses(backend, victim, store.load_session_head_meta, schema=("session_head", 7))
    await refuses(backend, victim, lambda: store.load_session(FullGraph()), schema=("session_head", 7))
    await refuses(backend, victim, lambda: store.load_session(ActivePath()), schema=("session_head", 7))
    # GC must not judge reachability from a head it cannot read.
    await refuses(backend, victim, store.gc_unreachable, schema=("session_head", 7))
    # Records other than the head are still readable.
    assert await store.load_node("A") == node("A")
    assert await store.load_session_meta() == META
    assert [b.batch_id for b in await store.list_queued_work("root")] == [victim.batch_id]
    # A head without a schema_version is corrupt.
    await raw(backend).hdel(k.head, "schema_version")
    await refuses(backend, victim, store.load_session_head_meta, key=k.head)
    await refuses(backend, victim, store.gc_unreachable, key=k.head)
    await neighbor_works(neighbor)


async def test_commit_refuses_a_head_of_another_schema_version(backend: Backend, victim: Namespace) -> None:
    store, k = victim.store, victim.keys
    await raw(backend).hset(k.head, "schema_version", "7")
    await refuses(
        backend,
        victim,
        lambda: store.commit_runtime_state(victim.fenced(minimal("root"))),
        schema=("session_head", 7),
    )


async def test_unknown_schema_version_in_batch(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    stored = await raw(backend).hget(k.q_batches, victim.batch_id)
    assert stored is not None
    await raw(backend).hset(k.q_batches, victim.batch_id, with_version(stored, 7))
    await refuses(backend, victim, lambda: store.list_queued_work("root"), schema=("queued_work_batch", 7))
    await refuses(
        backend, victim, lambda: store.list_pending_queued_work("root"), schema=("queued_work_batch", 7)
    )
    assert len(await store.list_queued_work("other")) == 1
    await raw(backend).hset(k.q_batches, victim.batch_id, stored)

    # The claim state row carries the version too; it is checked inside the scripts, before any write.
    state = await raw(backend).hget(k.q_state, victim.batch_id)
    assert state is not None and state.startswith(b"1 ")
    await raw(backend).hset(k.q_state, victim.batch_id, b"7" + state[1:])
    fence = victim.lease.fence()
    await refuses(
        backend, victim, lambda: store.list_pending_queued_work("root"), schema=("queued_work_batch", 7)
    )
    await refuses(
        backend,
        victim,
        lambda: store.claim_ready_queued_work("root", fence, "q", IDLE, 1000, 1),
        schema=("queued_work_batch", 7),
    )
    await refuses(
        backend,
        victim,
        lambda: store.cancel_queued_work_batch("root", victim.batch_id),
        schema=("queued_work_batch", 7),
    )
    # list_queued_work does not read claim state; the other session's claim path is unaffected.
    assert [b.batch_id for b in await store.list_queued_work("root")] == [victim.batch_id]
    other = await store.try_claim_session_execution_lease("other", "w", 60_000)
    assert other is not None
    claim = await store.claim_ready_queued_work("other", other.fence(), "q", IDLE, 1000, 1)
    assert claim is not None and claim.batches[0].session_id == "other"
    await neighbor_works(neighbor)


async def test_unknown_schema_version_in_lease_row(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    row = await raw(backend).hget(k.leases, "root")
    assert row is not None and row.startswith(b"1 ")
    await raw(backend).hset(k.leases, "root", b"7" + row[1:])
    lease = victim.lease
    want = ("session_execution_lease", 7)
    await refuses(
        backend, victim, lambda: store.try_claim_session_execution_lease("root", "x", 10), schema=want
    )
    await refuses(
        backend, victim, lambda: store.renew_session_execution_lease(lease.fence(), 10), schema=want
    )
    await refuses(
        backend, victim, lambda: store.release_session_execution_lease(lease.completion()), schema=want
    )
    await refuses(
        backend, victim, lambda: store.commit_runtime_state(victim.fenced(minimal("root"))), schema=want
    )
    await refuses(
        backend,
        victim,
        lambda: store.claim_ready_queued_work("root", lease.fence(), "q", IDLE, 1000, 1),
        schema=want,
    )
    # A row that does not parse at all is corrupt and named.
    await raw(backend).hset(k.leases, "root", b"garbage")
    await refuses(
        backend, victim, lambda: store.try_claim_session_execution_lease("root", "x", 10), key=k.leases
    )
    # Other sessions' rows in the same hash are unaffected; so are reads.
    assert await store.try_claim_session_execution_lease("other", "x", 10) is not None
    assert await store.load_session(FullGraph()) is not None
    await neighbor_works(neighbor)


async def test_unknown_schema_version_in_attachment_row(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    stored = await raw(backend).hget(k.att, "att")
    assert stored is not None
    await raw(backend).hset(k.att, "att", with_version(stored, 7))
    want = ("attachment_manifest_entry", 7)
    await refuses(backend, victim, lambda: store.list_uncommitted(100), schema=want)
    await refuses(backend, victim, lambda: store.commit_refs("root", ["att"]), schema=want)
    await raw(backend).hset(k.att, "att", b"{bad")
    await refuses(backend, victim, lambda: store.list_uncommitted(100), key=k.att)
    await refuses(backend, victim, lambda: store.commit_refs("root", ["att"]), key=k.att)
    # forget removes the row whatever it holds; the manifest is healthy again.
    await store.forget("att")
    assert await store.list_uncommitted(100) == []
    await neighbor_works(neighbor)


async def test_commit_refuses_an_attachment_row_of_another_schema_version(
    backend: Backend, victim: Namespace
) -> None:
    store, k = victim.store, victim.keys
    stored = await raw(backend).hget(k.att, "att")
    assert stored is not None
    await raw(backend).hset(k.att, "att", with_version(stored, 7))
    commit = victim.fenced(minimal("root", committed_attachment_ids=["att"]))
    await refuses(
        backend, victim, lambda: store.commit_runtime_state(commit), schema=("attachment_manifest_entry", 7)
    )


async def test_unknown_schema_version_in_turn_record(
    backend: Backend, victim: Namespace, neighbor: Namespace
) -> None:
    store, k = victim.store, victim.keys
    (field,) = await raw(backend).hkeys(k.turns)
    stored = await raw(backend).hget(k.turns, field)
    assert stored is not None
    await raw(backend).hset(k.turns, field, with_version(stored, 7))
    replay = STAMPED_BASE.with_turn_commit(STAMP)
    await refuses(
        backend, victim, lambda: store.commit_runtime_state(replay), schema=("runtime_turn_commit", 7)
    )
    await neighbor_works(neighbor)


# ---- wrong Redis types ------------------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["head", "nodes", "meta", "leases"])
async def test_wrong_redis_type(backend: Backend, victim: Namespace, neighbor: Namespace, part: str) -> None:
    store, k = victim.store, victim.keys
    key = k.part(part)
    await raw(backend).delete(key)
    await raw(backend).rpush(key, b"planted")
    fence = victim.lease.fence()
    ops: dict[str, Callable[[], Awaitable[Any]]] = {
        "load_session": lambda: store.load_session(FullGraph()),
        "load_session_head_meta": store.load_session_head_meta,
        "load_node": lambda: store.load_node("A"),
        "load_session_meta": store.load_session_meta,
        "load_picker_info": store.load_picker_info,
        "commit": lambda: store.commit_runtime_state(victim.fenced(minimal("root"))),
        "try_claim": lambda: store.try_claim_session_execution_lease("z", "o", 10),
        "save_session_meta": lambda: store.save_session_meta(META),
        "list_queued_work": lambda: store.list_queued_work("root"),
        "claim": lambda: store.claim_ready_queued_work("root", fence, "q", IDLE, 1000, 1),
        "tombstone_nodes": lambda: store.tombstone_nodes(["A"]),
        "vacuum": store.vacuum,
        "gc_unreachable": store.gc_unreachable,
        "list_uncommitted": lambda: store.list_uncommitted(100),
    }
    touches = {
        "head": {"load_session", "load_session_head_meta", "commit", "gc_unreachable"},
        "nodes": {"load_session", "load_node", "load_picker_info", "commit", "tombstone_nodes", "vacuum"},
        "meta": {"load_session_meta", "load_picker_info", "save_session_meta"},
        "leases": {"commit", "try_claim", "list_queued_work", "claim"},
    }[part]
    for name, op in ops.items():
        if name in touches:
            err = await refuses(backend, victim, op, key=key)
            assert "list" in str(err), name
        else:
            await op()  # unaffected operations keep working
    assert await raw(backend).type(key) == b"list"
    await neighbor_works(neighbor)
