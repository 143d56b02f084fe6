"""Shared fixtures: a real Redis for the session, an optional local cluster, and per-test key isolation.

* ``redis_url`` (session): ``$REDIS_URL`` if set, else a private `EmbeddedRedis` stopped by pid at the end.
* ``cluster`` (session, lazy): ``$SESSIONFENCE_CLUSTER_URL`` if set, else a 3-primary `LocalCluster`; skipped
  with the reason when it cannot be built (``SESSIONFENCE_REQUIRE_CLUSTER=1`` turns that skip into a failure).
* ``backend`` (function): parametrized ``standalone`` / ``cluster`` (the latter marked ``cluster``, so
  ``-m "not cluster"`` deselects it); clients made through it are closed at teardown.
* ``namespace`` / ``key_prefix`` (function): unique per test, so tests never collide on a shared server and
  never need FLUSHALL.
* ``private_redis`` (function): a fresh appendonly `EmbeddedRedis` that a test may stop, start or restart.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

if importlib.util.find_spec("sessionfence") is None:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from redisbed import Backend, BackendKind, ClusterBed, dump_keys

from sessionfence._cluster import ClusterUnavailable, LocalCluster
from sessionfence.embedded import EmbeddedRedis
from sessionfence.store import AsyncRedisStore


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Any test that asks for the cluster fixture directly is a cluster-tier test."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the standalone Redis shared by the whole session."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterBed]:
    """The cluster tier, built the first time a test asks for it (so `-m "not cluster"` never pays for it)."""
    external = os.environ.get("SESSIONFENCE_CLUSTER_URL")
    if external:
        yield ClusterBed(url=external, startup_nodes=[], started_locally=False)
        return
    local = LocalCluster()
    try:
        local.start()
    except ClusterUnavailable as exc:
        reason = f"local Redis Cluster unavailable: {exc}"
        if os.environ.get("SESSIONFENCE_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield ClusterBed(url=local.url, startup_nodes=local.startup_nodes, started_locally=True)
    finally:
        local.close()


@pytest_asyncio.fixture(params=["standalone", pytest.param("cluster", marks=pytest.mark.cluster)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """A standalone or cluster deployment; async fixture so async clients are closed on the test's loop."""
    kind: BackendKind = request.param
    url = (
        request.getfixturevalue("redis_url")
        if kind == "standalone"
        else request.getfixturevalue("cluster").url
    )
    handle = Backend(kind=kind, url=url)
    try:
        yield handle
    finally:
        await handle.aclose()


@pytest.fixture
def namespace() -> str:
    return f"ns-{uuid.uuid4()}"


@pytest.fixture
def key_prefix() -> str:
    return "sft" + uuid.uuid4().hex[:8]


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (AOF on, fsync always) for restart and fault tests."""
    with EmbeddedRedis(appendonly=True, appendfsync="always") as server:
        yield server


# ---- store handles shared by the scenario modules ----------------------------------------------------------


@pytest.fixture
def make_store(backend: Backend, namespace: str, key_prefix: str) -> Callable[..., AsyncRedisStore]:
    """A new handle (with its own client) on the test's namespace."""

    def make(**options: Any) -> AsyncRedisStore:
        return AsyncRedisStore(backend.async_client(), namespace, key_prefix=key_prefix, **options)

    return make


@pytest.fixture
def store(make_store: Callable[..., AsyncRedisStore]) -> AsyncRedisStore:
    return make_store()


@pytest.fixture
def snapshot(backend: Backend, key_prefix: str) -> Callable[[], dict[bytes, bytes]]:
    """A stable snapshot of every key under the test's prefix: compare two to assert that nothing changed."""
    client = backend.sync_client()
    return lambda: dump_keys(client, f"{key_prefix}:*")
