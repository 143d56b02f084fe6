"""Maintenance and attachment scenarios of contract §3: tombstones, vacuum, GC, the attachment manifest and
the namespace schema marker (C7, C8, C19, S10-S14 tombstone parts, S16-S18, S32, S34).

Every test runs on standalone Redis and on the 3-primary cluster (``backend`` fixture) with a per-test key
prefix, and asserts "nothing applied" with a snapshot of every key of the prefix (tests/keystate.py).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from builders import draft, leased, minimal, node
from keystate import astate
from redisbed import Backend

from sessionfence import (
    ActivePath,
    AsyncRedisStore,
    AsyncRedisStoreFactory,
    AttachmentIntent,
    BackendError,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HeadRevisionConflict,
    InvalidRequest,
    QueuedWorkClaimBoundary,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    SessionGraph,
    SessionMeta,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
    UnsupportedRecordSchemaVersion,
)
from sessionfence.canonical import canonical
from sessionfence.keys import NamespaceKeys
from sessionfence.manifest import NoopAttachmentManifest
from sessionfence.models import RuntimeCommit

IDLE = QueuedWorkClaimBoundary.IDLE
EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE

C5_GRAPH = [
    node("root-node"),
    node("left-node", "root-node"),
    node("left-leaf", "left-node"),
    node("right-leaf", "root-node"),
]


# ---- helpers ----------------------------------------------------------------------------------------------


def make_store(backend: Backend, namespace: str, key_prefix: str, **options: Any) -> AsyncRedisStore:
    return AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix, **options)


async def lease(store: AsyncRedisStore, sid: str = "root", owner: str = "w") -> SessionExecutionLease:
    got = await store.try_claim_session_execution_lease(sid, owner, 60_000)
    assert got is not None, f"lease({sid!r}, {owner!r}) must succeed"
    return got


def fenced(commit: RuntimeCommit, lease_: SessionExecutionLease) -> RuntimeCommit:
    """Fenced by the lease without releasing it, so one lease authorizes a sequence of commits."""
    return commit.with_session_execution_lease(lease_.fence())


def replace(nodes: list[Any], leaf: str | None) -> GraphReplaceFull:
    return GraphReplaceFull(SessionGraph(nodes=nodes, leaf_node_id=leaf))


def ids(nodes: list[Any]) -> list[str]:
    return [n.node_id for n in nodes]


async def snapshot(backend: Backend, key_prefix: str) -> dict[bytes, Any]:
    return await astate(backend.async_client(), f"{key_prefix}:*")


def intent(aid: str, sid: str = "root", uri: str | None = None, at: int = 100) -> AttachmentIntent:
    return AttachmentIntent(aid, sid, uri if uri is not None else f"sha256:{aid}", at)


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# ---- C7, C8, S32: the attachment manifest -----------------------------------------------------------------


async def test_C7_attachment_manifest_records_intents_and_commit_stamps(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    store = make_store(backend, namespace, key_prefix)
    for aid in ("runtime-commit", "manual-commit", "orphan"):
        await store.record_intent(intent(aid))
    listed = await store.list_uncommitted(200)
    assert [e.attachment_id for e in listed] == ["manual-commit", "orphan", "runtime-commit"]
    assert all(e.committed_at_epoch_ms is None and e.session_id == "root" for e in listed)
    assert {e.canonical_uri for e in listed} == {
        "sha256:manual-commit",
        "sha256:orphan",
        "sha256:runtime-commit",
    }

    await store.commit_refs("root", ["manual-commit"])
    await store.commit_runtime_state(
        leased(minimal("root", committed_attachment_ids=["runtime-commit"]), await lease(store))
    )
    listed = await store.list_uncommitted(200)
    assert len(listed) == 1
    orphan = listed[0]
    assert orphan.attachment_id == "orphan"
    assert orphan.session_id == "root"
    assert orphan.canonical_uri == "sha256:orphan"
    assert orphan.intent_at_epoch_ms == 100
    assert orphan.committed_at_epoch_ms is None

    await store.forget("orphan")
    assert await store.list_uncommitted(200) == []


def test_C8_noop_attachment_manifest_is_explicit_and_empty() -> None:
    manifest = NoopAttachmentManifest()
    assert manifest.record_intent(intent("runtime-commit")) is None
    assert manifest.record_intent(intent("orphan", sid="other", at=0)) is None
    assert manifest.commit_refs("root", ["runtime-commit", "never-recorded"]) is None
    assert manifest.commit_refs("root", []) is None
    assert manifest.forget("orphan") is None
    assert manifest.forget("unknown") is None
    assert manifest.list_uncommitted(200) == []
    assert manifest.list_uncommitted(2**63 - 1) == []
    # The variant is explicit: it is not exported at the top level and is not a store.
    import sessionfence

    assert not hasattr(sessionfence, "NoopAttachmentManifest")
    assert "NoopAttachmentManifest" not in sessionfence.__all__


async def test_S32_intent_refresh_and_listing(backend: Backend, namespace: str, key_prefix: str) -> None:
    now = [1000]
    store = make_store(backend, namespace, key_prefix, clock=lambda: now[0])
    await store.record_intent(AttachmentIntent("X", "root", "u1", 100))
    await store.record_intent(AttachmentIntent("X", "root", "u2", 500))
    assert await store.list_uncommitted(499) == []
    (row,) = await store.list_uncommitted(500)
    assert (row.attachment_id, row.session_id, row.canonical_uri, row.intent_at_epoch_ms) == (
        "X",
        "root",
        "u2",
        500,
    )
    assert row.committed_at_epoch_ms is None

    await store.commit_refs("b", ["X"])
    assert [r.attachment_id for r in await store.list_uncommitted(10_000)] == ["X"]
    await store.commit_refs("root", ["X"])
    assert await store.list_uncommitted(10_000) == []
    # A third intent refreshes the row but keeps the stamp: never listed again.
    await store.record_intent(AttachmentIntent("X", "root", "u3", 900))
    assert await store.list_uncommitted(2**63 - 1) == []
    # commit_refs of unknown ids and of an empty list are silent no-ops.
    await store.commit_refs("root", ["unknown"])
    await store.commit_refs("root", [])

    # Ordering: (intent time, id), every session.
    await store.record_intent(AttachmentIntent("z", "s1", "uz", 100))
    await store.record_intent(AttachmentIntent("b", "s2", "ub", 300))
    await store.record_intent(AttachmentIntent("a", "s3", "ua", 100))
    assert [r.attachment_id for r in await store.list_uncommitted(300)] == ["a", "z", "b"]
    assert [r.attachment_id for r in await store.list_uncommitted(299)] == ["a", "z"]

    # A commit listing Y that fails (on CAS) leaves Y uncommitted and changes nothing.
    await store.record_intent(AttachmentIntent("Y", "root", "uy", 100))
    lease_ = await lease(store)
    before = await snapshot(backend, key_prefix)
    failing = fenced(minimal("root", expected_head_revision=7, committed_attachment_ids=["Y"]), lease_)
    with pytest.raises(HeadRevisionConflict) as info:
        await store.commit_runtime_state(failing)
    assert (info.value.expected, info.value.actual) == (7, 0)
    assert await snapshot(backend, key_prefix) == before
    assert "Y" in [r.attachment_id for r in await store.list_uncommitted(100)]
    # The corrected commit stamps it; another session's row in the same list is left alone.
    await store.record_intent(AttachmentIntent("W", "elsewhere", "uw", 100))
    ok = fenced(
        minimal("root", expected_head_revision=0, committed_attachment_ids=["Y", "W", "nope"]), lease_
    )
    assert (await store.commit_runtime_state(ok)).head_revision == 1
    assert [r.attachment_id for r in await store.list_uncommitted(100)] == ["W", "a", "z"]
    # forget works on committed rows and rows of any session.
    await store.forget("X")
    await store.forget("W")
    await store.forget("never-there")
    assert [r.attachment_id for r in await store.list_uncommitted(1000)] == ["a", "z", "b"]


# ---- C19, S10-S14: tombstones and vacuum ------------------------------------------------------------------


async def test_C19_tombstone_vacuum_and_gc_are_consistent(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    store = make_store(backend, namespace, key_prefix)
    graph = replace([node("node-live"), node("node-delete", "node-live")], "node-delete")
    await store.commit_runtime_state(leased(minimal("root", graph=graph), await lease(store)))
    assert (await store.load_node("node-delete")) == node("node-delete", "node-live")

    await store.tombstone_nodes(["node-delete"])
    assert await store.load_node("node-delete") is None
    assert await store.load_node("node-live") is not None
    read = await store.load_session(FullGraph())
    assert read is not None
    assert ids(read.graph.nodes) == ["node-live"]

    assert (await store.vacuum()).removed_node_count == 1
    report = await store.gc_unreachable()
    assert report.root_count == 1
    assert report.deleted_blob_count == 0


async def test_S10_append_collisions(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    lease_ = await lease(store)
    await store.commit_runtime_state(fenced(minimal("root", graph=replace([node("A")], "A")), lease_))
    r2 = await store.commit_runtime_state(
        fenced(minimal("root", graph=GraphAppend([node("B", "A")], "B")), lease_)
    )
    assert r2.head_revision == 2

    # A collision with a live node: BackendError, and nothing applied (usage and attachment ids included).
    await store.record_intent(intent("att-x"))
    before = await snapshot(backend, key_prefix)
    usage = [
        TokenLedgerEntry("turn", "m", TokenUsage(input_tokens=5, output_tokens=1, cached_input_tokens=0))
    ]
    colliding = minimal(
        "root", graph=GraphAppend([node("A")], "A"), usage_deltas=usage, committed_attachment_ids=["att-x"]
    )
    with pytest.raises(BackendError) as info:
        await store.commit_runtime_state(fenced(colliding, lease_))
    assert "A" in str(info.value)
    assert await snapshot(backend, key_prefix) == before
    assert [r.attachment_id for r in await store.list_uncommitted(200)] == ["att-x"]

    with pytest.raises(InvalidRequest):
        await store.commit_runtime_state(
            fenced(minimal("root", graph=GraphAppend([node("C"), node("C")], "C")), lease_)
        )
    with pytest.raises(InvalidRequest):
        await store.commit_runtime_state(
            fenced(minimal("root", graph=replace([node("C"), node("C")], "C")), lease_)
        )
    assert await snapshot(backend, key_prefix) == before

    # A tombstoned id stays reserved until vacuumed.
    await store.tombstone_nodes(["B"])
    tombstoned = await snapshot(backend, key_prefix)
    with pytest.raises(BackendError):
        await store.commit_runtime_state(fenced(minimal("root", graph=GraphAppend([node("B")], "B")), lease_))
    assert await snapshot(backend, key_prefix) == tombstoned
    assert (await store.vacuum()).removed_node_count == 1
    r3 = await store.commit_runtime_state(
        fenced(minimal("root", graph=GraphAppend([node("B")], "B")), lease_)
    )
    assert r3.head_revision == 3
    read = await store.load_session(FullGraph())
    assert read is not None
    assert read.graph.nodes == [node("A"), node("B")]
    meta = await store.load_session_head_meta()
    assert meta is not None and meta.graph_node_count == 2


async def test_S11_replace_full_clears_tombstones(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    lease_ = await lease(store)
    await store.commit_runtime_state(
        fenced(minimal("root", graph=replace([node("A"), node("B", "A")], "B")), lease_)
    )
    await store.tombstone_nodes(["B"])
    await store.commit_runtime_state(fenced(minimal("root", graph=replace([node("X")], "X")), lease_))
    read = await store.load_session(FullGraph())
    assert read is not None
    assert ids(read.graph.nodes) == ["X"]
    assert read.graph.leaf_node_id == "X"
    assert await store.load_node("A") is None
    assert await store.load_node("B") is None
    assert (await store.vacuum()).removed_node_count == 0
    r = await store.commit_runtime_state(
        fenced(minimal("root", graph=GraphAppend([node("B", "X")], "B")), lease_)
    )
    assert r.head_revision == 3
    read = await store.load_session(ActivePath())
    assert read is not None
    assert ids(read.graph.nodes) == ["X", "B"]
    meta = await store.load_session_head_meta()
    assert meta is not None and meta.graph_node_count == 2


async def test_S12_active_path_after_tombstone(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    lease_ = await lease(store, "branchy")
    await store.commit_runtime_state(fenced(minimal("branchy", graph=replace(C5_GRAPH, "left-leaf")), lease_))
    read = await store.load_session(ActivePath("nope"))
    assert read is not None
    assert (read.graph.nodes, read.graph.leaf_node_id) == ([], "nope")

    await store.tombstone_nodes(["left-node"])
    path = await store.load_session(ActivePath("left-leaf"))
    assert path is not None
    assert ids(path.graph.nodes) == ["left-leaf"]
    assert path.graph.leaf_node_id == "left-leaf"
    full = await store.load_session(FullGraph())
    assert full is not None
    assert full.graph.leaf_node_id == "left-leaf"
    assert ids(full.graph.nodes) == ["root-node", "left-leaf", "right-leaf"]
    # The default path starts at the head's leaf, and a tombstoned leaf itself yields no nodes.
    default = await store.load_session(ActivePath())
    assert default is not None and ids(default.graph.nodes) == ["left-leaf"]
    await store.tombstone_nodes(["left-leaf"])
    gone = await store.load_session(ActivePath("left-leaf"))
    assert gone is not None
    assert (gone.graph.nodes, gone.graph.leaf_node_id) == ([], "left-leaf")
    # The other branch is untouched.
    right = await store.load_session(ActivePath("right-leaf"))
    assert right is not None and ids(right.graph.nodes) == ["root-node", "right-leaf"]

    await store.commit_runtime_state(fenced(minimal("branchy", graph=GraphUnchanged(None)), lease_))
    cleared = await store.load_session(ActivePath())
    assert cleared is not None
    assert (cleared.graph.nodes, cleared.graph.leaf_node_id) == ([], None)

    await store.commit_runtime_state(
        fenced(minimal("branchy", graph=replace([node("p", "q"), node("q", "p")], "p")), lease_)
    )
    cycle = await store.load_session(ActivePath())
    assert cycle is not None and ids(cycle.graph.nodes) == ["q", "p"]
    await store.tombstone_nodes(["q"])
    cut = await store.load_session(ActivePath())
    assert cut is not None and ids(cut.graph.nodes) == ["p"]


async def test_S13_leaf_and_count_after_tombstone(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    lease_ = await lease(store, "branchy")
    await store.commit_runtime_state(fenced(minimal("branchy", graph=replace(C5_GRAPH, "left-leaf")), lease_))
    r2 = await store.commit_runtime_state(
        fenced(minimal("branchy", expected_head_revision=1, graph=GraphUnchanged("right-leaf")), lease_)
    )
    assert r2.head_revision == 2
    meta = await store.load_session_head_meta()
    assert meta is not None
    assert (meta.leaf_node_id, meta.graph_node_count) == ("right-leaf", 4)

    head_before = await backend.async_client().hgetall(NamespaceKeys(key_prefix, namespace).head)
    await store.tombstone_nodes(["right-leaf", "unknown-node"])
    assert await backend.async_client().hgetall(NamespaceKeys(key_prefix, namespace).head) == head_before
    meta = await store.load_session_head_meta()
    assert meta is not None
    assert (meta.leaf_node_id, meta.graph_node_count) == ("right-leaf", 4)
    full = await store.load_session(FullGraph())
    assert full is not None
    assert ids(full.graph.nodes) == ["root-node", "left-node", "left-leaf"]
    assert full.graph.leaf_node_id == "right-leaf"

    await store.commit_runtime_state(
        fenced(minimal("branchy", expected_head_revision=2, graph=GraphUnchanged("right-leaf")), lease_)
    )
    meta = await store.load_session_head_meta()
    assert meta is not None
    assert (meta.head_revision, meta.graph_node_count) == (3, 3)
    # An empty tombstone list is a no-op; tombstoning twice counts once.
    await store.tombstone_nodes([])
    await store.tombstone_nodes(["left-leaf"])
    await store.tombstone_nodes(["left-leaf"])
    await store.commit_runtime_state(fenced(minimal("branchy", graph=GraphUnchanged("left-node")), lease_))
    meta = await store.load_session_head_meta()
    assert meta is not None and meta.graph_node_count == 2


async def test_S14_vacuum_counts(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    lease_ = await lease(store)
    graph = replace([node("A"), node("B", "A"), node("C", "B")], "C")
    await store.commit_runtime_state(fenced(minimal("root", graph=graph), lease_))
    assert (await store.vacuum()).removed_node_count == 0
    await store.tombstone_nodes(["B", "C"])
    assert (await store.vacuum()).removed_node_count == 2
    assert (await store.vacuum()).removed_node_count == 0

    meta = await store.load_session_head_meta()
    assert meta is not None
    assert meta.leaf_node_id == "C"  # the head is not modified even though its leaf was removed
    assert meta.graph_node_count == 3
    full = await store.load_session(FullGraph())
    assert full is not None
    assert (ids(full.graph.nodes), full.graph.leaf_node_id) == (["A"], "C")
    path = await store.load_session(ActivePath())
    assert path is not None and (path.graph.nodes, path.graph.leaf_node_id) == ([], "C")
    assert await store.load_node("B") is None
    # Freed ids may be appended again, after the surviving node.
    await store.commit_runtime_state(
        fenced(minimal("root", graph=GraphAppend([node("C", "A"), node("B", "C")], "B")), lease_)
    )
    path = await store.load_session(ActivePath())
    assert path is not None and ids(path.graph.nodes) == ["A", "C", "B"]
    full = await store.load_session(FullGraph())
    assert full is not None and ids(full.graph.nodes) == ["A", "C", "B"]


# ---- S16-S18: GC ------------------------------------------------------------------------------------------


async def test_S16_gc_counts(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    keys = NamespaceKeys(key_prefix, namespace)
    raw = backend.async_client()
    # A namespace without a head has no roots.
    empty = await store.gc_unreachable()
    assert (empty.root_count, empty.retained_blob_count, empty.deleted_blob_count) == (0, 0, 0)

    lease_ = await lease(store)
    await store.commit_runtime_state(
        fenced(minimal("root", tool_state={"generation": 1, "tools": {}}), lease_)
    )
    r2 = await store.commit_runtime_state(
        fenced(minimal("root", tool_state={"generation": 2, "tools": {}}), lease_)
    )
    assert await raw.hlen(keys.blobs) == 4
    report = await store.gc_unreachable()
    assert (report.root_count, report.retained_blob_count, report.deleted_blob_count) == (1, 2, 2)
    assert sorted(k.decode() for k in await raw.hkeys(keys.blobs)) == sorted(
        [r2.checkpoint_ref, r2.manifest.tool_state_ref]
    )
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    assert read.checkpoint.tool_state == {"generation": 2, "tools": {}}
    again = await store.gc_unreachable()
    assert (again.root_count, again.retained_blob_count, again.deleted_blob_count) == (1, 2, 0)

    full = minimal(
        "root",
        tool_state={"generation": 3, "tools": {"t": 1}},
        plugin_snapshot={"plugins": {"p": {"v": 1}}},
        plugin_snapshot_revision=4,
        execution_state=b"\xde\xad\xbe\xef",
    )
    r3 = await store.commit_runtime_state(fenced(full, lease_))
    assert r3.manifest.execution_state_ref == sha(b"\xde\xad\xbe\xef")
    assert r3.manifest.tool_state_ref == sha(canonical({"generation": 3, "tools": {"t": 1}}))
    report = await store.gc_unreachable()
    assert (report.root_count, report.retained_blob_count, report.deleted_blob_count) == (1, 4, 2)
    assert await raw.hlen(keys.blobs) == 4
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None
    cp = read.checkpoint
    assert cp.tool_state == {"generation": 3, "tools": {"t": 1}}
    assert cp.plugin_snapshot == {"plugins": {"p": {"v": 1}}}
    assert cp.plugin_snapshot_revision == 4
    assert cp.execution_state == b"\xde\xad\xbe\xef"
    assert (cp.tool_state_ref, cp.plugin_snapshot_ref, cp.execution_state_ref) == (
        r3.manifest.tool_state_ref,
        r3.manifest.plugin_snapshot_ref,
        r3.manifest.execution_state_ref,
    )

    # Refs that name absent blobs are retained (counted) but not hydrated; the root alone if no manifest.
    r4 = await store.commit_runtime_state(fenced(minimal("root", tool_state_ref="unknown"), lease_))
    report = await store.gc_unreachable()
    assert (report.root_count, report.retained_blob_count, report.deleted_blob_count) == (1, 2, 4)
    assert await raw.hkeys(keys.blobs) == [r4.checkpoint_ref.encode()]
    await raw.hdel(keys.blobs, r4.checkpoint_ref)
    report = await store.gc_unreachable()
    assert (report.root_count, report.retained_blob_count, report.deleted_blob_count) == (1, 1, 0)
    read = await store.load_session(FullGraph())
    assert read is not None and read.checkpoint is None and read.checkpoint_ref == r4.checkpoint_ref


async def test_S17_gc_on_a_corrupt_live_manifest(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    keys = NamespaceKeys(key_prefix, namespace)
    raw = backend.async_client()
    lease_ = await lease(store)
    await store.commit_runtime_state(
        fenced(minimal("root", tool_state={"generation": 1, "tools": {}}), lease_)
    )
    r2 = await store.commit_runtime_state(
        fenced(minimal("root", tool_state={"generation": 2, "tools": {}}), lease_)
    )
    await raw.hset(keys.blobs, r2.checkpoint_ref, b"not json")
    before = await snapshot(backend, key_prefix)
    with pytest.raises(BackendError) as info:
        await store.gc_unreachable()
    assert keys.blobs in str(info.value)
    assert await snapshot(backend, key_prefix) == before
    assert await raw.hlen(keys.blobs) == 4
    with pytest.raises(BackendError):
        await store.load_session(FullGraph())
    with pytest.raises(BackendError):
        await store.load_session(ActivePath())
    # Valid JSON that is not a manifest object is just as corrupt.
    for bogus in (b"[1, 2]", b'{"tool_state_ref": 5}', b'"a string"'):
        await raw.hset(keys.blobs, r2.checkpoint_ref, bogus)
        with pytest.raises(BackendError):
            await store.gc_unreachable()
        assert await raw.hlen(keys.blobs) == 4, bogus
        with pytest.raises(BackendError):
            await store.load_session(FullGraph())
    # A fresh commit moves the root to a healthy manifest and GC recovers.
    await store.commit_runtime_state(
        fenced(minimal("root", tool_state={"generation": 3, "tools": {}}), lease_)
    )
    report = await store.gc_unreachable()
    assert (report.root_count, report.retained_blob_count, report.deleted_blob_count) == (1, 2, 4)


async def test_S18_replay_after_gc(backend: Backend, namespace: str, key_prefix: str) -> None:
    store = make_store(backend, namespace, key_prefix)
    keys = NamespaceKeys(key_prefix, namespace)
    raw = backend.async_client()
    lease_ = await lease(store)
    base = minimal("root", tool_state={"generation": 1, "tools": {}}, turn_index=1)
    stamped = fenced(
        base.with_turn_commit(RuntimeTurnCommitStamp("root", "t1", base.turn_commit_hash())), lease_
    )
    first = await store.commit_runtime_state(stamped)
    assert first.head_revision == 1
    second = await store.commit_runtime_state(
        fenced(minimal("root", tool_state={"generation": 2, "tools": {}}), lease_)
    )
    assert second.head_revision == 2
    report = await store.gc_unreachable()
    assert report.deleted_blob_count == 2
    assert not await raw.hexists(keys.blobs, first.checkpoint_ref)
    assert not await raw.hexists(keys.blobs, first.manifest.tool_state_ref or "")

    before = await snapshot(backend, key_prefix)
    again = await store.commit_runtime_state(stamped)
    assert again == first
    # A replay without any lease returns the same stored result and writes nothing.
    bare = stamped.model_copy(update={"session_execution_lease": None})
    assert await store.commit_runtime_state(bare) == first
    assert await snapshot(backend, key_prefix) == before
    meta = await store.load_session_head_meta()
    assert meta is not None and meta.head_revision == 2


# ---- S34: the namespace schema marker ---------------------------------------------------------------------


async def test_S34_unknown_schema_marker_refuses_every_operation(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    now = [1000]
    store = make_store(backend, namespace, key_prefix, clock=lambda: now[0])
    raw = backend.async_client()
    keys = NamespaceKeys(key_prefix, namespace)

    # A populated namespace: head, graph, blobs, queue with a live claim, a lease, meta, intents.
    lease_ = await lease(store)
    await store.commit_runtime_state(
        fenced(
            minimal("root", graph=replace([node("A")], "A"), tool_state={"generation": 1, "tools": {}}),
            lease_,
        )
    )
    batch = await store.enqueue_queued_work(draft("root", "queued", EARLIEST, EXCL))
    await store.enqueue_queued_work(draft("root", "second", EARLIEST, EXCL))
    claim = await store.claim_ready_queued_work("root", lease_.fence(), "q", IDLE, 60_000, 1)
    assert claim is not None
    await store.save_session_meta(
        SessionMeta("root", "name", "2026-01-01T00:00:00Z", "m", None, SessionRelation.root())
    )
    await store.record_intent(intent("att"))
    await raw.set(keys.schema, b"99")
    before = await snapshot(backend, key_prefix)

    meta = SessionMeta("root", "other-name", "2026-01-01T00:00:00Z", "m", None, SessionRelation.root())
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "load_session(FullGraph)": lambda: store.load_session(FullGraph()),
        "load_session(ActivePath)": lambda: store.load_session(ActivePath("A")),
        "load_session_head_meta": store.load_session_head_meta,
        "load_node": lambda: store.load_node("A"),
        "commit_runtime_state": lambda: store.commit_runtime_state(
            fenced(minimal("root", graph=GraphAppend([node("B", "A")], "B")), lease_)
        ),
        "try_claim_session_execution_lease": lambda: store.try_claim_session_execution_lease(
            "other", "w", 10
        ),
        "renew_session_execution_lease": lambda: store.renew_session_execution_lease(lease_.fence(), 10),
        "release_session_execution_lease": lambda: store.release_session_execution_lease(lease_.completion()),
        "enqueue_queued_work": lambda: store.enqueue_queued_work(draft("root", "x", EARLIEST, EXCL)),
        "claim_ready_queued_work": lambda: store.claim_ready_queued_work(
            "root", lease_.fence(), "q", IDLE, 60_000, 1
        ),
        "claim_ready_queued_work_by_batch_ids": lambda: store.claim_ready_queued_work_by_batch_ids(
            "root", lease_.fence(), "q", IDLE, 60_000, [claim.batches[0].batch_id]
        ),
        "renew_queued_work_claim": lambda: store.renew_queued_work_claim(claim, 10),
        "abandon_queued_work_claim": lambda: store.abandon_queued_work_claim(claim),
        "cancel_queued_work_batch": lambda: store.cancel_queued_work_batch("root", batch.batch_id),
        "list_queued_work": lambda: store.list_queued_work("root"),
        "list_pending_queued_work": lambda: store.list_pending_queued_work("root"),
        "save_session_meta": lambda: store.save_session_meta(meta),
        "load_session_meta": store.load_session_meta,
        "load_picker_info": store.load_picker_info,
        "tombstone_nodes": lambda: store.tombstone_nodes(["A"]),
        "tombstone_nodes([])": lambda: store.tombstone_nodes([]),
        "vacuum": store.vacuum,
        "gc_unreachable": store.gc_unreachable,
        "record_intent": lambda: store.record_intent(intent("att2")),
        "commit_refs": lambda: store.commit_refs("root", ["att"]),
        "list_uncommitted": lambda: store.list_uncommitted(200),
        "forget": lambda: store.forget("att"),
    }
    for name, op in operations.items():
        with pytest.raises(UnsupportedRecordSchemaVersion) as info:
            await op()
        err = info.value
        assert (err.record_kind, err.actual, err.expected) == ("namespace", 99, 1), name
        assert await snapshot(backend, key_prefix) == before, f"{name} changed a key"

    # The factory refuses too (its namespace is a session id), and delete_session is the way out.
    factory = AsyncRedisStoreFactory(raw, key_prefix=key_prefix)
    request = SessionStoreCreateRequest(namespace, SessionRelation.root(), "m", "p")
    for name, call in (
        ("create_store", lambda: factory.create_store(request)),
        ("open_existing_store", lambda: factory.open_existing_store(request)),
    ):
        with pytest.raises(UnsupportedRecordSchemaVersion) as info:
            await call()
        assert (info.value.record_kind, info.value.actual, info.value.expected) == ("namespace", 99, 1), name
        assert await snapshot(backend, key_prefix) == before, f"{name} changed a key"
    await factory.delete_session(namespace)
    assert await raw.get(keys.schema) is None
    created = await factory.create_store(request)
    assert await created.load_session_meta() is not None
    assert await raw.get(keys.schema) == b"1"


async def test_S34_concurrent_first_writes_set_the_marker(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    keys = NamespaceKeys(key_prefix, namespace)
    raw = backend.async_client()
    stores = [make_store(backend, namespace, key_prefix) for _ in range(4)]
    writes: list[Awaitable[Any]] = []
    for i in range(16):
        store = stores[i % 4]
        match i % 4:
            case 0:
                writes.append(store.try_claim_session_execution_lease(f"s{i}", "w", 60_000))
            case 1:
                writes.append(store.enqueue_queued_work(draft(f"s{i}", "t", EARLIEST, EXCL)))
            case 2:
                writes.append(store.record_intent(intent(f"a{i}")))
            case _:
                writes.append(store.tombstone_nodes([f"n{i}"]))
    results = await asyncio.gather(*writes)
    assert all(r is not None for r in results[0::4])
    assert await raw.get(keys.schema) == b"1"
    assert len(await stores[0].list_uncommitted(200)) == 4
