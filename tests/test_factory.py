"""Session store factory: contract §3 F1-F5, S33, list_sessions and the pre-bound ``store(sid)`` (§2.16)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from builders import draft, leased, minimal, node
from redisbed import Backend, dump_keys

from sessionfence import (
    AsyncRedisStore,
    AsyncRedisStoreFactory,
    AttachmentIntent,
    DeliveryPolicy,
    DurabilityTier,
    FullGraph,
    GraphReplaceFull,
    InvalidRequest,
    QueuedWorkClaimBoundary,
    RedisStoreFactory,
    RuntimeTurnCommitStamp,
    SessionBindingMismatch,
    SessionExecutionLease,
    SessionGraph,
    SessionMeta,
    SessionNodeRecord,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    UnsupportedRecordSchemaVersion,
)
from sessionfence.keys import index_key

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE
IDLE = QueuedWorkClaimBoundary.IDLE


@pytest.fixture
def make_factory(backend: Backend, key_prefix: str) -> Callable[..., AsyncRedisStoreFactory]:
    def make(**options: Any) -> AsyncRedisStoreFactory:
        return AsyncRedisStoreFactory(backend.async_client(), key_prefix=key_prefix, **options)

    return make


@pytest.fixture
def factory(make_factory: Callable[..., AsyncRedisStoreFactory]) -> AsyncRedisStoreFactory:
    return make_factory()


@pytest.fixture
def keys_of(backend: Backend) -> Callable[[AsyncRedisStore], dict[bytes, bytes]]:
    """DUMP of every key of one store's namespace."""
    client = backend.sync_client()
    return lambda store: dump_keys(client, store.keys.base + "*")


def request(
    sid: str, model: str = "model", relation: SessionRelation | None = None, cwd: str | None = None
) -> Any:
    return SessionStoreCreateRequest(sid, relation or SessionRelation.root(), model, "provider", cwd)


async def lease(store: AsyncRedisStore, sid: str, owner: str, ttl: int = 60_000) -> SessionExecutionLease:
    granted = await store.try_claim_session_execution_lease(sid, owner, ttl)
    assert granted is not None
    return granted


def user_message(node_id: str, text: str) -> SessionNodeRecord:
    return SessionNodeRecord(
        node_id=node_id,
        timestamp="2026-06-02T00:00:00Z",
        kind="event",
        event={
            "Conversation": {
                "id": f"m-{node_id}",
                "role": "User",
                "parts": [{"id": "p", "kind": "Text", "content": text, "prune_state": "Intact"}],
            }
        },
    )


# ---- F1-F5 -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [DurabilityTier.INLINE, DurabilityTier.DURABLE])
async def test_F1_declared_tier(
    make_factory: Callable[..., AsyncRedisStoreFactory], tier: DurabilityTier
) -> None:
    factory = make_factory(durability=tier)
    assert factory.durability_tier() is tier
    created = await factory.create_store(request("tiered"))
    assert created.durability_tier() is tier
    assert factory.store("other").durability_tier() is tier
    opened = await factory.open_existing_store(request("tiered"))
    assert opened is not None and opened.durability_tier() is tier


async def test_F1_default_tier_is_durable(factory: AsyncRedisStoreFactory) -> None:
    assert factory.durability_tier() is DurabilityTier.DURABLE
    assert factory.store("x").durability_tier() is DurabilityTier.DURABLE


async def test_F2_open_missing_returns_none_and_writes_nothing(
    factory: AsyncRedisStoreFactory, backend: Backend, key_prefix: str
) -> None:
    assert await factory.open_existing_store(request("missing-session")) is None
    assert list(backend.sync_client().scan_iter(match=f"{key_prefix}:*")) == []
    assert await factory.list_sessions() == []


async def test_F3_create_seeds_meta_and_reopen_sees_it(factory: AsyncRedisStoreFactory) -> None:
    relation = SessionRelation.child("parent-session")
    store = await factory.create_store(request("session-a", "model-a", relation, cwd="/srv/a"))
    assert store.durability_tier() is factory.durability_tier()
    meta = await store.load_session_meta()
    assert meta is not None
    assert meta.session_id == meta.session_name == "session-a"
    assert meta.model == "model-a"
    assert meta.relation == relation and meta.parent_session_id == "parent-session"
    assert meta.cwd == "/srv/a"
    assert meta.created_at != ""
    opened = await factory.open_existing_store(request("session-a", "model-a", relation))
    assert opened is not None
    assert await opened.load_session_meta() == meta
    # A session created but never committed has no head.
    assert await opened.load_session(FullGraph()) is None


async def test_F3_created_at_follows_the_injected_clock(
    make_factory: Callable[..., AsyncRedisStoreFactory],
) -> None:
    factory = make_factory(clock=lambda: 1_780_000_000_123)
    store = await factory.create_store(request("clocked"))
    meta = await store.load_session_meta()
    assert meta is not None and meta.created_at.startswith("2026-05-28T")


async def test_F4_create_is_idempotent(factory: AsyncRedisStoreFactory) -> None:
    store = await factory.create_store(request("stable-session", "initial-model"))
    custom = SessionMeta(
        "stable-session",
        "custom-name",
        "custom-created-at",
        "custom-model",
        "/srv/custom",
        SessionRelation.child("custom-parent"),
    )
    await store.save_session_meta(custom)
    again = await factory.create_store(request("stable-session", "changed-model"))
    meta = await again.load_session_meta()
    assert meta == custom
    assert meta is not None
    assert (meta.session_name, meta.model, meta.parent_session_id) == (
        "custom-name",
        "custom-model",
        "custom-parent",
    )
    assert [info.session_id for info in await factory.list_sessions()] == ["stable-session"]


async def test_F5_delete_removes_store_and_is_idempotent(factory: AsyncRedisStoreFactory) -> None:
    await factory.create_store(request("delete-session", "delete-model"))
    assert await factory.open_existing_store(request("delete-session")) is not None
    await factory.delete_session("delete-session")
    assert await factory.open_existing_store(request("delete-session")) is None
    await factory.delete_session("delete-session")
    await factory.delete_session("never-existed")
    recreated = await factory.create_store(request("delete-session", "recreated-model"))
    meta = await recreated.load_session_meta()
    assert meta is not None
    assert (meta.model, meta.session_name) == ("recreated-model", "delete-session")


# ---- S33 ---------------------------------------------------------------------------------------------------


async def test_S33_factory_binding_and_delete(
    factory: AsyncRedisStoreFactory, keys_of: Callable[[AsyncRedisStore], dict[bytes, bytes]]
) -> None:
    sa = await factory.create_store(request("sa"))
    foreign = await lease(sa, "sb", "w")  # lease rows are not limited to the bound session
    before = keys_of(sa)
    with pytest.raises(SessionBindingMismatch) as info:
        await sa.commit_runtime_state(leased(minimal("sb"), foreign))
    assert (info.value.bound_session_id, info.value.attempted_session_id) == ("sa", "sb")
    assert keys_of(sa) == before
    assert await sa.load_session(FullGraph()) is None
    first = await lease(sa, "sa", "w1")
    assert first.fencing_token == 1
    await sa.release_session_execution_lease(first.completion())
    second = await lease(sa, "sa", "w2")
    assert second.fencing_token == 2  # still live: delete_session must not leave it blocking the lane
    await factory.delete_session("sa")
    assert len(keys_of(sa)) <= 1
    fresh = factory.store("sa")
    assert (await lease(fresh, "sa", "w3")).fencing_token == 3
    recreated = await factory.create_store(request("sa"))
    await recreated.release_session_execution_lease((await lease(recreated, "sb", "x")).completion())


async def test_S33_delete_leaves_at_most_the_fencing_key(
    factory: AsyncRedisStoreFactory, keys_of: Callable[[AsyncRedisStore], dict[bytes, bytes]]
) -> None:
    """A namespace holding every kind of record is emptied except for one fencing key."""
    store = await factory.create_store(request("full"))
    held = await lease(store, "full", "w")
    await store.commit_runtime_state(
        minimal(
            "full",
            graph=GraphReplaceFull(SessionGraph([node("a"), node("b", "a")], "b")),
            tool_state={"generation": 1, "tools": {}},
            execution_state=b"\x00\x01",
        ).with_session_execution_lease(held.fence())
    )
    await store.tombstone_nodes(["b"])
    for sid in ("full", "other", "third"):
        await store.enqueue_queued_work(draft(sid, "q", EARLIEST, EXCL, source=f"src-{sid}"))
    claim = await store.claim_ready_queued_work("full", held.fence(), "w", IDLE, 60_000, 1)
    assert claim is not None
    await store.record_intent(AttachmentIntent("att", "full", "uri", 100))
    assert len(keys_of(store)) > 10
    await factory.delete_session("full")
    remaining = keys_of(store)
    assert len(remaining) <= 1, sorted(remaining)
    assert await factory.open_existing_store(request("full")) is None
    assert await store.load_session(FullGraph()) is None
    assert await store.list_queued_work("other") == []
    assert await store.list_uncommitted(1_000) == []
    assert (await lease(store, "full", "w2")).fencing_token == 2


# ---- list_sessions and store(sid) --------------------------------------------------------------------------


async def test_list_sessions_ordered_by_id_and_skips_deleted(
    factory: AsyncRedisStoreFactory, backend: Backend, key_prefix: str
) -> None:
    for sid in ("charlie", "alpha", "delta", "bravo"):
        await factory.create_store(request(sid, cwd=f"/srv/{sid}"))
    bravo = factory.store("bravo")
    held = await lease(bravo, "bravo", "w")
    await bravo.commit_runtime_state(
        leased(
            minimal("bravo", graph=GraphReplaceFull(SessionGraph([user_message("u", "hi bravo")], "u"))), held
        )
    )
    listed = await factory.list_sessions()
    assert [info.session_id for info in listed] == ["alpha", "bravo", "charlie", "delta"]
    assert [info.cwd for info in listed] == ["/srv/alpha", "/srv/bravo", "/srv/charlie", "/srv/delta"]
    by_id = {info.session_id: info for info in listed}
    assert (by_id["bravo"].user_message_count, by_id["bravo"].first_user_message) == (1, "hi bravo")
    assert by_id["alpha"].user_message_count == 0
    await factory.delete_session("charlie")
    assert [info.session_id for info in await factory.list_sessions()] == ["alpha", "bravo", "delta"]
    # An index entry whose namespace vanished (a crash between the two steps of a delete) is skipped.
    client = backend.sync_client()
    delta = factory.store("delta")
    client.delete(delta.keys.meta, delta.keys.schema)
    assert client.zscore(index_key(key_prefix), "delta") is not None
    assert [info.session_id for info in await factory.list_sessions()] == ["alpha", "bravo"]
    # Another factory on the same prefix sees the same index.
    other = AsyncRedisStoreFactory(backend.async_client(), key_prefix=key_prefix)
    assert [info.session_id for info in await other.list_sessions()] == ["alpha", "bravo"]


async def test_store_handle_is_pre_bound_and_does_no_io(
    factory: AsyncRedisStoreFactory, backend: Backend, key_prefix: str
) -> None:
    handle = factory.store("bound")
    assert list(backend.sync_client().scan_iter(match=f"{key_prefix}:*")) == []
    held = await lease(handle, "intruder", "w")
    with pytest.raises(SessionBindingMismatch) as info:
        await handle.commit_runtime_state(leased(minimal("intruder"), held))
    assert (info.value.bound_session_id, info.value.attempted_session_id) == ("bound", "intruder")
    assert await handle.load_session(FullGraph()) is None
    mine = await lease(handle, "bound", "w")
    assert (await handle.commit_runtime_state(leased(minimal("bound"), mine))).head_revision == 1
    # A plain (unbound) handle on the same namespace meets the durable head binding.
    plain = AsyncRedisStore(backend.async_client(), "bound", key_prefix=key_prefix)
    with pytest.raises(SessionBindingMismatch) as info:
        await plain.commit_runtime_state(leased(minimal("intruder"), held))
    assert (info.value.bound_session_id, info.value.attempted_session_id) == ("bound", "intruder")
    # open_existing_store finds a namespace that has a head but no meta (written without create_store).
    assert await factory.open_existing_store(request("bound")) is not None
    # store() is not in the index: only create_store adds to it, and list_sessions needs meta.
    assert await factory.list_sessions() == []


async def test_factory_sessions_are_separate_namespaces(factory: AsyncRedisStoreFactory) -> None:
    a = await factory.create_store(request("a"))
    b = await factory.create_store(request("b"))
    assert a.keys.base != b.keys.base
    la, lb = await lease(a, "a", "w"), await lease(b, "b", "w")
    assert la.fencing_token == lb.fencing_token == 1
    await a.commit_runtime_state(leased(minimal("a", tool_state={"generation": 1, "tools": {}}), la))
    assert await b.load_session(FullGraph()) is None
    await factory.delete_session("b")
    assert await a.load_session(FullGraph()) is not None


async def test_factory_refuses_foreign_schema_and_delete_clears_it(
    factory: AsyncRedisStoreFactory, backend: Backend
) -> None:
    store = await factory.create_store(request("old"))
    backend.sync_client().set(store.keys.schema, b"99")
    for call in (factory.create_store(request("old")), factory.open_existing_store(request("old"))):
        with pytest.raises(UnsupportedRecordSchemaVersion) as info:
            await call
        assert (info.value.record_kind, info.value.actual, info.value.expected) == ("namespace", 99, 1)
    await factory.delete_session("old")  # the documented way out: delete the namespace
    fresh = await factory.create_store(request("old", "new-model"))
    meta = await fresh.load_session_meta()
    assert meta is not None and meta.model == "new-model"


async def test_create_store_refuses_empty_session_id(
    factory: AsyncRedisStoreFactory, backend: Backend, key_prefix: str
) -> None:
    with pytest.raises(InvalidRequest):
        await factory.create_store(request(""))
    assert list(backend.sync_client().scan_iter(match=f"{key_prefix}:*")) == []


async def test_concurrent_create_store_is_idempotent(
    make_factory: Callable[..., AsyncRedisStoreFactory],
) -> None:
    factories = [make_factory() for _ in range(8)]
    stores = await asyncio.gather(
        *(f.create_store(request("race", f"model-{i}")) for i, f in enumerate(factories))
    )
    metas = [await s.load_session_meta() for s in stores]
    assert all(m == metas[0] for m in metas)
    assert metas[0] is not None and metas[0].model.startswith("model-")
    assert [info.session_id for info in await factories[0].list_sessions()] == ["race"]


def test_sync_factory_twin(backend: Backend, key_prefix: str) -> None:
    factory = RedisStoreFactory(backend.sync_client(), key_prefix=key_prefix)
    sid = f"sync-{uuid.uuid4().hex[:6]}"
    assert factory.open_existing_store(request(sid)) is None
    store = factory.create_store(request(sid, "m"))
    meta = store.load_session_meta()
    assert meta is not None and meta.model == "m"
    granted = store.try_claim_session_execution_lease(sid, "w", 60_000)
    assert granted is not None
    assert store.commit_runtime_state(leased(minimal(sid), granted)).head_revision == 1
    assert [info.session_id for info in factory.list_sessions()] == [sid]
    factory.delete_session(sid)
    assert factory.open_existing_store(request(sid)) is None
    assert factory.list_sessions() == []


@pytest.mark.parametrize(
    "bad",
    [
        SessionStoreCreateRequest("s", SessionRelation.root(), "\ud800", "p"),
        SessionStoreCreateRequest("s", SessionRelation.root(), "m", "p", cwd="\udfff"),
        SessionStoreCreateRequest("s", SessionRelation.child("parent", caused_by={1, 2}), "m", "p"),
        SessionStoreCreateRequest("s", SessionRelation.child("\ud800"), "m", "p"),
        SessionStoreCreateRequest("x" * (1024 * 1024), SessionRelation.root(), "m", "p"),
    ],
    ids=["model surrogate", "cwd surrogate", "caused_by set", "parent surrogate", "session 1MB"],
)
async def test_create_store_refuses_unencodable_requests(
    factory: AsyncRedisStoreFactory, backend: Backend, key_prefix: str, bad: SessionStoreCreateRequest
) -> None:
    with pytest.raises(InvalidRequest):
        await factory.create_store(bad)
    assert list(backend.sync_client().scan_iter(match=f"{key_prefix}:*")) == []


async def test_binding_precedes_replay(
    factory: AsyncRedisStoreFactory, backend: Backend, key_prefix: str
) -> None:
    """A perfect replay through a handle pre-bound to another session still fails (§2.3 step 2)."""
    plain = AsyncRedisStore(backend.async_client(), "shared", key_prefix=key_prefix)
    commit = minimal("alpha")
    commit = commit.with_turn_commit(RuntimeTurnCommitStamp("alpha", "t", commit.turn_commit_hash()))
    first = await plain.commit_runtime_state(leased(commit, await lease(plain, "alpha", "w")))
    assert await plain.commit_runtime_state(commit) == first
    bound = factory.store("shared")  # the factory's handle for session "shared" is this very namespace
    with pytest.raises(SessionBindingMismatch) as info:
        await bound.commit_runtime_state(commit)
    assert (info.value.bound_session_id, info.value.attempted_session_id) == ("shared", "alpha")
