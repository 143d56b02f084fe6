"""Script-cache loss (NOSCRIPT fallback) and reopening a namespace: new handles, and a Redis restart with AOF.

A script missing from the server's cache (SCRIPT FLUSH, restart, failover) must be re-sent transparently.
Everything of §1.15 must survive a new handle and a restart with persistence, and fencing tokens keep rising.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
import redis.cluster
from builders import draft, leased, minimal, node
from redisbed import Backend

from sessionfence import (
    AsyncRedisStore,
    AsyncRedisStoreFactory,
    AttachmentIntent,
    BackendUnavailable,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    RedisStore,
    RuntimeTurnCommitStamp,
    SessionGraph,
    SessionMeta,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
)
from sessionfence.embedded import EmbeddedRedis
from sessionfence.scripts import script

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE


# ---- script cache helpers ----------------------------------------------------------------------------------


def primaries(client: Any) -> list[redis.Redis]:
    if isinstance(client, redis.cluster.RedisCluster):
        return [n.redis_connection for n in client.get_primaries()]
    return [client]


def flush_scripts(client: Any) -> None:
    """SCRIPT FLUSH on every primary."""
    for conn in primaries(client):
        assert conn.script_flush()


def cached(client: Any, name: str) -> bool:
    """Whether some primary has the operation's script (prelude included) in its cache."""
    sha = script(name).sha
    return any(conn.script_exists(sha)[0] for conn in primaries(client))


# ---- NOSCRIPT recovery -------------------------------------------------------------------------------------


async def test_noscript_recovery_after_script_flush(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    raw = backend.sync_client()
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    first = await store.try_claim_session_execution_lease("root", "w", 60_000)
    assert first is not None
    assert (await store.commit_runtime_state(leased(minimal("root"), first))).head_revision == 1
    assert cached(raw, "commit") and cached(raw, "lease_claim")

    flush_scripts(raw)
    assert not cached(raw, "commit") and not cached(raw, "lease_claim")
    second = await store.try_claim_session_execution_lease("root", "w", 60_000)
    assert second is not None and second.fencing_token == 2
    assert (
        await store.commit_runtime_state(leased(minimal("root", turn_index=1), second))
    ).head_revision == 2
    assert cached(raw, "commit") and cached(raw, "lease_claim")  # EVAL cached them again
    read = await store.load_session(FullGraph())
    assert read is not None and read.head_revision == 2


async def test_every_core_operation_survives_a_flush_just_before_it(
    backend: Backend, namespace: str, key_prefix: str
) -> None:
    raw = backend.sync_client()
    client = backend.async_client()
    factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
    sid = namespace
    request = SessionStoreCreateRequest(sid, SessionRelation.root(), "m", "p")
    state: dict[str, Any] = {}

    async def claim() -> None:
        state["lease"] = await factory.store(sid).try_claim_session_execution_lease(sid, "w", 60_000)
        assert state["lease"] is not None

    async def commit() -> None:
        store = factory.store(sid)
        graph = GraphReplaceFull(SessionGraph([node("a"), node("b", "a")], "b"))
        result = await store.commit_runtime_state(
            minimal(sid, graph=graph).with_session_execution_lease(state["lease"].fence())
        )
        assert result.head_revision == 1

    async def renew() -> None:
        renewed = await factory.store(sid).renew_session_execution_lease(state["lease"].fence(), 30_000)
        assert renewed.fence() == state["lease"].fence()

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("factory_exists", lambda: factory.open_existing_store(request)),
        ("factory_create", lambda: factory.create_store(request)),
        ("lease_claim", claim),
        ("lease_renew", renew),
        ("commit", commit),
        (
            "lease_release",
            lambda: factory.store(sid).release_session_execution_lease(state["lease"].completion()),
        ),
        ("load_session", lambda: factory.store(sid).load_session(FullGraph())),
        ("load_head", lambda: factory.store(sid).load_session_head_meta()),
        ("load_node", lambda: factory.store(sid).load_node("b")),
        ("meta_save", lambda: factory.store(sid).save_session_meta(SessionMeta(sid, "renamed", "t", "m"))),
        ("meta_load", lambda: factory.store(sid).load_session_meta()),
        ("picker_info", lambda: factory.list_sessions()),
        ("factory_delete", lambda: factory.delete_session(sid)),
    ]
    for name, step in steps:
        flush_scripts(raw)
        await step()
        assert cached(raw, name), name
    assert await factory.open_existing_store(request) is None
    assert (await factory.store(sid).try_claim_session_execution_lease(sid, "w", 1)).fencing_token == 2  # type: ignore[union-attr]


def test_sync_noscript_recovery(backend: Backend, namespace: str, key_prefix: str) -> None:
    raw = backend.sync_client()
    store = RedisStore(backend.sync_client(), namespace, key_prefix=key_prefix)
    for revision in (1, 2, 3):
        flush_scripts(raw)
        granted = store.try_claim_session_execution_lease("root", "w", 60_000)
        assert granted is not None and granted.fencing_token == revision
        flush_scripts(raw)
        assert store.commit_runtime_state(
            leased(minimal("root", turn_index=revision), granted)
        ).head_revision == (revision)
    flush_scripts(raw)
    read = store.load_session(FullGraph())
    assert read is not None and read.checkpoint is not None and read.checkpoint.turn_state.turn_index == 3


# ---- reopen across handles and a Redis restart -------------------------------------------------------------


async def write_everything(store: AsyncRedisStore, other: AsyncRedisStore) -> dict[str, Any]:
    """C22 with two handles, then C21's writes, plus a live lease, a stamped commit and graph history."""
    race = await asyncio.gather(
        store.try_claim_session_execution_lease("first-claim-race", "owner-a", 60_000),
        other.try_claim_session_execution_lease("first-claim-race", "owner-b", 60_000),
    )
    winners = [r for r in race if r is not None]
    assert len(winners) == 1 and winners[0].fencing_token == 1
    await store.release_session_execution_lease(winners[0].completion())
    await store.save_session_meta(
        SessionMeta(
            "root",
            "Durable Root",
            "2026-06-02T00:00:00Z",
            "gpt-5.4-mini",
            "/srv/reopen",
            SessionRelation.root(),
        )
    )
    granted = await store.try_claim_session_execution_lease("root", "writer", 60_000)
    assert granted is not None
    await store.commit_runtime_state(
        leased(minimal("root", graph=GraphReplaceFull(SessionGraph([node("n1")], "n1"))), granted)
    )
    granted = await store.try_claim_session_execution_lease("root", "writer", 60_000)
    assert granted is not None
    turn = minimal(
        "root",
        tool_state={"generation": 77, "tools": {}},
        graph=GraphAppend([node("n2", "n1")], "n2"),
        execution_state=b"\x00vm\xff",
    )
    turn = turn.with_turn_commit(RuntimeTurnCommitStamp("root", "reopen-turn", turn.turn_commit_hash()))
    result = await store.commit_runtime_state(leased(turn, granted))
    batch = await store.enqueue_queued_work(
        draft("root", "survives reopen", EARLIEST, EXCL, source="reopen:queued")
    )
    await store.record_intent(AttachmentIntent("reopen-attachment", "root", "sha256:reopen-attachment", 100))
    held = await store.try_claim_session_execution_lease("root", "holder", 600_000)
    assert held is not None
    return {"result": result, "turn": turn, "batch": batch, "held": held}


async def check_everything(store: AsyncRedisStore, written: dict[str, Any]) -> None:
    meta = await store.load_session_meta()
    assert meta is not None and meta.session_name == "Durable Root"
    read = await store.load_session(FullGraph())
    assert read is not None
    assert read.session_id == "root" and read.head_revision == 2
    assert read.checkpoint is not None and read.checkpoint.tool_state == {"generation": 77, "tools": {}}
    assert read.checkpoint.execution_state == b"\x00vm\xff"
    assert [n.node_id for n in read.graph.nodes] == ["n1", "n2"] and read.graph.leaf_node_id == "n2"
    queued = await store.list_queued_work("root")
    assert [b.batch_id for b in queued] == [written["batch"].batch_id]
    assert queued[0].items[0].payload["input"]["items"][0]["text"] == "survives reopen"
    assert "reopen-attachment" in [row.attachment_id for row in await store.list_uncommitted(200)]
    # The turn record survives: a retry of the stamped commit replays without a lease.
    assert await store.commit_runtime_state(written["turn"]) == written["result"]
    # The live lease is still held, and its holder can still use it.
    held = written["held"]
    assert await store.try_claim_session_execution_lease("root", "intruder", 60_000) is None
    renewed = await store.renew_session_execution_lease(held.fence(), 600_000)
    assert renewed.fence() == held.fence()


async def test_C21_reopen_with_new_handles(backend: Backend, namespace: str, key_prefix: str) -> None:
    a = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    b = AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix)
    written = await write_everything(a, b)
    await check_everything(b, written)
    await check_everything(AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix), written)


async def test_C21_survives_a_redis_restart_and_fencing_keeps_rising(
    private_redis: EmbeddedRedis, namespace: str, key_prefix: str
) -> None:
    url = private_redis.url
    a = AsyncRedisStore.from_url(url, namespace, key_prefix=key_prefix)
    b = AsyncRedisStore.from_url(url, namespace, key_prefix=key_prefix)
    written = await write_everything(a, b)
    await a.aclose()
    await b.aclose()
    await private_redis.arestart()
    raw = redis.Redis.from_url(url)
    try:
        assert not cached(raw, "load_session")  # the script cache did not survive: NOSCRIPT path below
        async with AsyncRedisStore.from_url(url, namespace, key_prefix=key_prefix) as c:
            await check_everything(c, written)
            # Fencing continues above every token issued before the restart.
            held = written["held"]
            await c.release_session_execution_lease(held.completion())
            after = await c.try_claim_session_execution_lease("root", "after-restart", 60_000)
            assert after is not None and after.fencing_token == held.fencing_token + 1
            race = await c.try_claim_session_execution_lease("first-claim-race", "owner-c", 60_000)
            assert race is not None and race.fencing_token == 2
            # The enqueue sequence continues too, and the source-key dedup still holds.
            again = await c.enqueue_queued_work(
                draft("root", "other text", EARLIEST, EXCL, source="reopen:queued")
            )
            assert again == written["batch"]
            newer = await c.enqueue_queued_work(draft("root", "newer", EARLIEST, EXCL))
            assert newer.enqueue_seq > written["batch"].enqueue_seq
            assert (await c.commit_runtime_state(leased(minimal("root"), after))).head_revision == 3
        # A second restart: the post-restart writes are durable as well.
        await private_redis.arestart()
        async with AsyncRedisStore.from_url(url, namespace, key_prefix=key_prefix) as d:
            head = await d.load_session_head_meta()
            assert head is not None and head.head_revision == 3
            lane = await d.try_claim_session_execution_lease("root", "third", 60_000)
            assert lane is not None and lane.fencing_token == held.fencing_token + 2
    finally:
        raw.close()


def test_sync_handle_kept_across_a_restart(
    private_redis: EmbeddedRedis, namespace: str, key_prefix: str
) -> None:
    """A handle opened before the restart keeps working after it (at most one BackendUnavailable first)."""
    with RedisStore.from_url(private_redis.url, namespace, key_prefix=key_prefix) as store:
        granted = store.try_claim_session_execution_lease("root", "w", 60_000)
        assert granted is not None
        store.commit_runtime_state(leased(minimal("root"), granted))
        private_redis.restart()
        try:
            head = store.load_session_head_meta()
        except BackendUnavailable:
            head = store.load_session_head_meta()
        assert head is not None and head.head_revision == 1
        after = store.try_claim_session_execution_lease("root", "w2", 60_000)
        assert after is not None and after.fencing_token == 2
        assert store.commit_runtime_state(leased(minimal("root"), after)).head_revision == 2


async def test_async_handle_kept_across_a_restart(
    private_redis: EmbeddedRedis, namespace: str, key_prefix: str
) -> None:
    async with AsyncRedisStore.from_url(private_redis.url, namespace, key_prefix=key_prefix) as store:
        granted = await store.try_claim_session_execution_lease("root", "w", 60_000)
        assert granted is not None
        await store.commit_runtime_state(leased(minimal("root"), granted))
        await private_redis.arestart()
        try:
            head = await store.load_session_head_meta()
        except BackendUnavailable:  # the pooled connection died with the server; the next call reconnects
            head = await store.load_session_head_meta()
        assert head is not None and head.head_revision == 1
        after = await store.try_claim_session_execution_lease("root", "w2", 60_000)
        assert after is not None and after.fencing_token == 2


async def test_fencing_survives_restart_after_delete_session(
    private_redis: EmbeddedRedis, key_prefix: str
) -> None:
    """The high-water marks kept by delete_session are persisted like everything else."""
    factory = AsyncRedisStoreFactory.from_url(private_redis.url, key_prefix=key_prefix)
    request = SessionStoreCreateRequest("s", SessionRelation.root(), "m", "p")
    store = await factory.create_store(request)
    for expected in (1, 2):
        granted = await store.try_claim_session_execution_lease("s", "w", 60_000)
        assert granted is not None and granted.fencing_token == expected
        await store.release_session_execution_lease(granted.completion())
    await factory.delete_session("s")
    await factory.aclose()
    await private_redis.arestart()
    async with AsyncRedisStoreFactory.from_url(private_redis.url, key_prefix=key_prefix) as again:
        assert await again.open_existing_store(request) is None
        granted = await (await again.create_store(request)).try_claim_session_execution_lease(
            "s", "w", 60_000
        )
        assert granted is not None and granted.fencing_token == 3
