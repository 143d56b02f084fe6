"""from_url builds standalone or cluster clients; the same scripts run on both (one hash tag per namespace)."""

from __future__ import annotations

from builders import leased, minimal, node
from redisbed import ClusterBed

from sessionfence import (
    AsyncRedisStore,
    AsyncRedisStoreFactory,
    FullGraph,
    GraphReplaceFull,
    RedisStore,
    RedisStoreFactory,
    RuntimeCommit,
    SessionExecutionLease,
    SessionGraph,
    SessionRelation,
    SessionStoreCreateRequest,
)


def _commit(sid: str, lease: SessionExecutionLease) -> RuntimeCommit:
    graph = GraphReplaceFull(SessionGraph([node("a"), node("b", "a")], "b"))
    return leased(minimal(sid, graph=graph), lease)


async def test_async_from_url_on_a_cluster(cluster: ClusterBed, key_prefix: str) -> None:
    async with AsyncRedisStore.from_url(cluster.url, "c1", key_prefix=key_prefix, cluster=True) as store:
        lease = await store.try_claim_session_execution_lease("c1", "w", 60_000)
        assert lease is not None
        result = await store.commit_runtime_state(_commit("c1", lease))
        read = await store.load_session(FullGraph())
        assert result.head_revision == 1 and read is not None
        assert [n.node_id for n in read.graph.nodes] == ["a", "b"]
    async with AsyncRedisStoreFactory.from_url(cluster.url, key_prefix=key_prefix, cluster=True) as factory:
        await factory.create_store(SessionStoreCreateRequest("c2", SessionRelation.root(), "m", "p"))
        assert [i.session_id for i in await factory.list_sessions()] == ["c2"]
        await factory.delete_session("c2")
        assert await factory.list_sessions() == []


def test_sync_from_url_standalone_and_cluster(redis_url: str, cluster: ClusterBed, key_prefix: str) -> None:
    for url, is_cluster in ((redis_url, False), (cluster.url, True)):
        with RedisStore.from_url(url, "s1", key_prefix=key_prefix + str(is_cluster), cluster=is_cluster) as store:
            lease = store.try_claim_session_execution_lease("s1", "w", 60_000)
            assert lease is not None
            assert store.commit_runtime_state(_commit("s1", lease)).head_revision == 1
        with RedisStoreFactory.from_url(url, key_prefix=key_prefix + str(is_cluster), cluster=is_cluster) as f:
            assert f.open_existing_store(SessionStoreCreateRequest("s1", SessionRelation.root(), "m", "p"))
