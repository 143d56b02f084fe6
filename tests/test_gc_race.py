"""GC racing committers across processes: `gc_unreachable` never removes a blob a reader can reach.

Four processes commit 2,000 commits in total, each carrying a new checkpoint (a unique tool state, plugin
snapshot and execution state, so every commit writes three new blobs and a manifest). Two of them share one
session through one session lease (blind writes), the other two own a session each (CAS-chained writes). A
fifth process runs `gc_unreachable` on all three namespaces in a tight loop. After every commit the committer
loads the session at once and checks that the checkpoint hydrates fully: the manifest and all three bodies are
present and each body hashes to its ref. At the end every session's checkpoint is loaded back and must be the
checkpoint of the commit whose revision the head carries.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import queue
import time
import traceback
from typing import Any

import pytest
import redis
from builders import minimal

from sessionfence import (
    FullGraph,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    RedisStore,
    SessionExecutionLeaseFence,
)
from sessionfence.canonical import canonical

pytestmark = pytest.mark.slow

COMMITS_PER_WRITER = 500
WRITERS = 4
SHARED = "gc-race-shared"
NAMESPACES = [SHARED, "gc-race-solo-2", "gc-race-solo-3"]
WRITER_NAMESPACE = [SHARED, SHARED, NAMESPACES[1], NAMESPACES[2]]  # writers 0 and 1 share one lease


def body(writer: int, n: int) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    return (
        {"generation": n, "tools": {"writer": writer, "n": n}},
        {"plugins": {"writer": {"w": writer, "n": n}}},
        f"vm-state:{writer}:{n}".encode() * 3,
    )


def check_hydrated(cp: HydratedSessionCheckpoint | None) -> None:
    """Every component present and content-addressed: no reachable blob is missing."""
    assert cp is not None, "checkpoint manifest missing"
    assert cp.tool_state is not None, f"tool state blob {cp.tool_state_ref} missing"
    assert cp.plugin_snapshot is not None, f"plugin snapshot blob {cp.plugin_snapshot_ref} missing"
    assert cp.execution_state is not None, f"execution state blob {cp.execution_state_ref} missing"
    assert cp.tool_state_ref == hashlib.sha256(canonical(cp.tool_state)).hexdigest()
    assert cp.plugin_snapshot_ref == hashlib.sha256(canonical(cp.plugin_snapshot)).hexdigest()
    assert cp.execution_state_ref == hashlib.sha256(cp.execution_state).hexdigest()


def committer(
    url: str, prefix: str, namespace: str, writer: int, fence: dict[str, Any] | None, out: Any
) -> None:
    """Commit COMMITS_PER_WRITER checkpoints; after each, read back and check hydration."""
    try:
        client = redis.Redis.from_url(url)
        store = RedisStore(client, namespace, key_prefix=prefix)
        if fence is None:
            lease = store.try_claim_session_execution_lease("root", f"writer-{writer}", 600_000)
            assert lease is not None
            lane = lease.fence()
        else:
            lane = SessionExecutionLeaseFence(**fence)
        expected: int | None = 0 if fence is None else None
        committed: dict[int, tuple[dict[str, Any], dict[str, Any], bytes]] = {}
        for n in range(COMMITS_PER_WRITER):
            tool, plugin, exe = body(writer, n)
            commit = minimal(
                "root",
                expected_head_revision=expected,
                graph=GraphUnchanged(None),
                turn_index=n,
                tool_state=tool,
                plugin_snapshot=plugin,
                plugin_snapshot_revision=n,
                execution_state=exe,
            ).with_session_execution_lease(lane)
            result = store.commit_runtime_state(commit)
            committed[result.head_revision] = (tool, plugin, exe)
            if expected is not None:
                expected = result.head_revision
            read = store.load_session(FullGraph())
            assert read is not None
            check_hydrated(read.checkpoint)
            assert read.checkpoint is not None
            if read.checkpoint_ref == result.checkpoint_ref:
                cp = read.checkpoint
                assert (cp.tool_state, cp.plugin_snapshot, cp.execution_state) == (tool, plugin, exe)
            if fence is None:  # nobody else writes this namespace
                assert read.head_revision == result.head_revision
                assert read.checkpoint_ref == result.checkpoint_ref
        client.close()
        out.put(("done", writer, committed))
    except BaseException:
        out.put(("error", writer, traceback.format_exc()))


def collector(url: str, prefix: str, stop: Any, out: Any) -> None:
    """GC every namespace in a loop until told to stop."""
    try:
        client = redis.Redis.from_url(url)
        stores = [RedisStore(client, ns, key_prefix=prefix) for ns in NAMESPACES]
        runs = deleted = 0
        while not stop.is_set():
            for store in stores:
                report = store.gc_unreachable()
                runs += 1
                deleted += report.deleted_blob_count
                assert report.root_count in (0, 1)
        client.close()
        out.put(("gc", runs, deleted))
    except BaseException:
        out.put(("error", "gc", traceback.format_exc()))


def test_gc_never_removes_a_reachable_blob(redis_url: str, key_prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    stop = ctx.Event()
    client = redis.Redis.from_url(redis_url)
    shared = RedisStore(client, SHARED, key_prefix=key_prefix)
    lease = shared.try_claim_session_execution_lease("root", "shared-owner", 600_000)
    assert lease is not None
    fence = lease.fence().model_dump()

    started = time.monotonic()
    gc = ctx.Process(target=collector, args=(redis_url, key_prefix, stop, out))
    gc.start()
    writers = [
        ctx.Process(
            target=committer,
            args=(
                redis_url,
                key_prefix,
                WRITER_NAMESPACE[w],
                w,
                fence if WRITER_NAMESPACE[w] == SHARED else None,
                out,
            ),
        )
        for w in range(WRITERS)
    ]
    for p in writers:
        p.start()
    messages: list[tuple[Any, Any, Any]] = []
    try:
        while sum(1 for m in messages if m[1] != "gc") < WRITERS:
            messages.append(out.get(timeout=120))
            kind, who, payload = messages[-1]
            assert kind != "error", f"{who} failed:\n{payload}"
    finally:
        stop.set()
        # A child cannot exit before its queued result is read, so keep draining while joining.
        deadline = time.monotonic() + 60
        for p in [*writers, gc]:
            while p.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    messages.append(out.get(timeout=0.2))
            if p.is_alive():
                p.kill()
        with contextlib.suppress(queue.Empty):
            while True:
                messages.append(out.get(timeout=0.2))
    errors = [m for m in messages if m[0] == "error"]
    assert not errors, f"{errors[0][1]} failed:\n{errors[0][2]}"
    results = {who: payload for kind, who, payload in messages if kind == "done"}
    ((_, runs, deleted),) = [m for m in messages if m[0] == "gc"]
    elapsed = time.monotonic() - started
    assert sum(len(c) for c in results.values()) == WRITERS * COMMITS_PER_WRITER
    # The collector really raced the writers: it ran many times and collected superseded checkpoints.
    assert runs >= 50, runs
    assert deleted > 0
    assert elapsed < 120

    # Every session's checkpoint loads back whole and is the one its head revision names.
    owners = {SHARED: (0, 1), NAMESPACES[1]: (2,), NAMESPACES[2]: (3,)}
    for ns, writer_ids in owners.items():
        store = RedisStore(client, ns, key_prefix=key_prefix)
        for _ in range(2):  # before and after one more GC
            read = store.load_session(FullGraph())
            assert read is not None
            check_hydrated(read.checkpoint)
            assert read.checkpoint is not None
            candidates = [
                results[w][read.head_revision] for w in writer_ids if read.head_revision in results[w]
            ]
            assert len(candidates) == 1
            assert (
                read.checkpoint.tool_state,
                read.checkpoint.plugin_snapshot,
                read.checkpoint.execution_state,
            ) == (candidates[0])
            report = store.gc_unreachable()
            assert report.root_count == 1
            assert report.retained_blob_count == 4
    expected_revisions = {
        SHARED: 2 * COMMITS_PER_WRITER,
        NAMESPACES[1]: COMMITS_PER_WRITER,
        NAMESPACES[2]: COMMITS_PER_WRITER,
    }
    for ns, revision in expected_revisions.items():
        head = RedisStore(client, ns, key_prefix=key_prefix).load_session_head_meta()
        assert head is not None and head.head_revision == revision
    client.close()
