"""`sessionfence.sweep`: SCAN-based orphan report (and guarded delete) under one key prefix.

Runs on standalone Redis and on the 3-primary cluster (SCAN must visit every primary), through both the
blocking `sweep` and the asyncio `asweep`.
"""

from __future__ import annotations

from typing import Any

import pytest
from builders import draft, leased, minimal, node
from keystate import astate, state
from redisbed import Backend

import sessionfence.sweep as sweep_module
from sessionfence import (
    AsyncRedisStore,
    AsyncRedisStoreFactory,
    AttachmentIntent,
    DeliveryPolicy,
    GraphReplaceFull,
    QueuedWorkClaimBoundary,
    RuntimeTurnCommitStamp,
    SessionGraph,
    SessionMeta,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
)
from sessionfence.keys import NamespaceKeys, encode_tag
from sessionfence.sweep import OrphanKey, SweepReport, asweep, decode_tag, parse_key, sweep

EARLIEST = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
EXCL = SlotPolicy.EXCLUSIVE
WEIRD = "we{ird}%sid"  # exercises the percent-encoding of session ids in per-session queue keys


async def busy_namespace(backend: Backend, prefix: str, namespace: str) -> NamespaceKeys:
    """A namespace that has written every kind of key the store knows."""
    store = AsyncRedisStore(backend.async_client(), namespace, key_prefix=prefix)
    lease = await store.try_claim_session_execution_lease("root", "w", 60_000)
    assert lease is not None
    await store.enqueue_queued_work(draft("root", "one", EARLIEST, EXCL, source="src"))
    await store.enqueue_queued_work(draft("root", "later", EARLIEST, EXCL, available=2**52))
    await store.enqueue_queued_work(draft(WEIRD, "weird", EARLIEST, EXCL))
    claim = await store.claim_ready_queued_work(
        "root", lease.fence(), "q", QueuedWorkClaimBoundary.IDLE, 60_000, 1
    )
    assert claim is not None
    await store.record_intent(AttachmentIntent("att", "root", "u", 1))
    await store.record_intent(AttachmentIntent("att2", "root", "u", 1))
    graph = GraphReplaceFull(SessionGraph(nodes=[node("A"), node("B", "A")], leaf_node_id="B"))
    usage = [
        TokenLedgerEntry("turn", "m", TokenUsage(input_tokens=1, output_tokens=2, cached_input_tokens=0))
    ]
    commit = minimal(
        "root",
        graph=graph,
        usage_deltas=usage,
        tool_state={"generation": 1, "tools": {}},
        committed_attachment_ids=["att"],
    )
    commit = commit.with_turn_commit(RuntimeTurnCommitStamp("root", "t", "h")).with_session_execution_lease(
        lease.fence()
    )
    await store.commit_runtime_state(commit)
    await store.tombstone_nodes(["B"])
    await store.save_session_meta(SessionMeta("root", "n", "c", "m", None, SessionRelation.root()))
    return NamespaceKeys(prefix, namespace)


async def run_both(backend: Backend, prefix: str, **options: Any) -> SweepReport:
    """Run the sync and the async sweep; they must agree (modulo delete counts, so only report here)."""
    assert not options.get("delete")
    sync_report = sweep(backend.sync_client(), prefix, **options)
    async_report = await asweep(backend.async_client(), prefix, **options)
    assert sorted(sync_report.orphans, key=lambda o: o.key) == sorted(
        async_report.orphans, key=lambda o: o.key
    )
    assert sync_report.scanned_keys == async_report.scanned_keys
    assert sync_report.namespaces == async_report.namespaces
    assert sorted(sync_report.foreign_namespaces) == sorted(async_report.foreign_namespaces)
    return sync_report


def by_key(report: SweepReport) -> dict[str, OrphanKey]:
    return {o.key: o for o in report.orphans}


def test_key_parsing_and_tag_decoding() -> None:
    keys = NamespaceKeys("pre:fix", "a{b}%c")
    assert parse_key("pre:fix", keys.head) == (encode_tag("a{b}%c"), "head")
    assert decode_tag(encode_tag("a{b}%c%7B")) == "a{b}%c%7B"
    assert parse_key("pre:fix", keys.q_all(WEIRD)) == (encode_tag("a{b}%c"), "q_all:" + encode_tag(WEIRD))
    assert parse_key("pre:fix", "pre:fix:loose") is None
    assert parse_key("pre:fix", "pre:fix:{open") is None
    assert parse_key("pre:fix", "pre:fix:{tag}nocolon") is None
    assert parse_key("pre:fix", "other:{tag}:head") is None
    # Every part keys.py builds is known to the sweep.
    assert {k[len(keys.base) :] for k in keys.fixed()} <= sweep_module.FIXED_PARTS
    assert set(sweep_module.PER_SESSION_PREFIXES) == {"q_all:", "q_ready:", "q_delayed:", "q_held:"}
    assert {"sessions", "ready", "ready_ver"} <= sweep_module.INDEX_PARTS


async def test_healthy_namespaces_have_no_orphans(backend: Backend, key_prefix: str) -> None:
    await busy_namespace(backend, key_prefix, "busy")
    factory = AsyncRedisStoreFactory(backend.async_client(), key_prefix=key_prefix)
    created = await factory.create_store(SessionStoreCreateRequest("made", SessionRelation.root(), "m", "p"))
    lease = await created.try_claim_session_execution_lease("made", "w", 60_000)
    assert lease is not None
    await created.commit_runtime_state(leased(minimal("made"), lease))
    # A deleted session keeps its fencing marks: still owned, not an orphan.
    await factory.create_store(SessionStoreCreateRequest("gone", SessionRelation.root(), "m", "p"))
    lease = await factory.store("gone").try_claim_session_execution_lease("gone", "w", 60_000)
    assert lease is not None
    await factory.delete_session("gone")
    # A namespace holding only queue work, only leases, or only attachment rows is alive.
    only_queue = AsyncRedisStore(backend.async_client(), "only-queue", key_prefix=key_prefix)
    await only_queue.enqueue_queued_work(draft("x", "t", EARLIEST, EXCL))
    only_att = AsyncRedisStore(backend.async_client(), "only-att", key_prefix=key_prefix)
    await only_att.record_intent(AttachmentIntent("a", "x", "u", 1))

    before = await astate(backend.async_client(), f"{key_prefix}:*")
    for page in (1000, 3):
        report = await run_both(backend, key_prefix, page=page)
        assert report.orphans == []
        assert report.foreign_namespaces == []
        assert report.scanned_keys == len(before)
        assert report.namespaces == 5  # busy, made, gone, only-queue, only-att (the index is not one)
        assert report.deleted == 0
    deleted = sweep(backend.sync_client(), key_prefix, delete=True)
    assert deleted.orphans == [] and deleted.deleted == 0
    assert await astate(backend.async_client(), f"{key_prefix}:*") == before


async def plant(backend: Backend, prefix: str) -> dict[str, str]:
    """Every kind of orphan, plus keys that look suspicious but are not orphans. Returns key -> reason."""
    raw = backend.sync_client()
    live = await busy_namespace(backend, prefix, "live")
    ghost = NamespaceKeys(prefix, "ghost{1}")
    raw.set(ghost.schema, b"1")
    raw.hset(ghost.blobs, "ref", b"body")
    raw.hset(ghost.nodes, "A", b"x")
    raw.zadd(ghost.q_all("root"), {"qwb:1": 1})
    raw.zadd(live.q_all("nobody"), {"qwb:x": 1})
    raw.zadd(live.q_ready(WEIRD + "-not-listed"), {"qwb:y": 1})
    raw.set(live.part("bogus"), b"1")
    raw.set(f"{prefix}:loose", b"1")
    raw.set(f"{prefix}:{{unterminated", b"1")
    raw.set(f"{prefix}:{{__index__}}:bogus", b"1")
    # A namespace of another schema version is never judged, even with no head and unknown parts.
    foreign = NamespaceKeys(prefix, "foreign")
    raw.set(foreign.schema, b"2")
    raw.set(foreign.part("v2_only_part"), b"1")
    raw.hset(foreign.blobs, "ref", b"body")
    # Keys under a different prefix that an unescaped glob or a bare prefix match would catch.
    raw.set(f"{prefix}x:{{ghost}}:blobs", b"1")
    return {
        ghost.schema: "orphaned_namespace",
        ghost.blobs: "orphaned_namespace",
        ghost.nodes: "orphaned_namespace",
        ghost.q_all("root"): "orphaned_namespace",
        live.q_all("nobody"): "unlisted_queue_session",
        live.q_ready(WEIRD + "-not-listed"): "unlisted_queue_session",
        live.part("bogus"): "unknown_part",
        f"{prefix}:{{__index__}}:bogus": "unknown_part",
        f"{prefix}:loose": "malformed_key",
        f"{prefix}:{{unterminated": "malformed_key",
    }


async def test_orphans_are_reported_not_deleted(backend: Backend, key_prefix: str) -> None:
    expected = await plant(backend, key_prefix)
    before = await astate(backend.async_client(), f"{key_prefix}*")
    for page in (1000, 1, 4):
        report = await run_both(backend, key_prefix, page=page)
        found = by_key(report)
        assert {k: o.reason for k, o in found.items()} == expected
        assert found[NamespaceKeys(key_prefix, "ghost{1}").blobs].namespace == "ghost{1}"
        assert found[NamespaceKeys(key_prefix, "live").q_all("nobody")].part == "q_all:nobody"
        assert report.foreign_namespaces == ["foreign"]
        assert report.namespaces == 3  # live, ghost{1}, foreign
        assert report.deleted == 0
        assert sorted(report.orphan_keys) == sorted(expected)
    assert await astate(backend.async_client(), f"{key_prefix}*") == before


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_delete_removes_exactly_the_orphans(backend: Backend, key_prefix: str, flavor: str) -> None:
    expected = await plant(backend, key_prefix)
    before = await astate(backend.async_client(), f"{key_prefix}*")
    if flavor == "sync":
        report = sweep(backend.sync_client(), key_prefix, delete=True, page=5)
    else:
        report = await asweep(backend.async_client(), key_prefix, delete=True, page=5)
    assert sorted(report.orphan_keys) == sorted(expected)
    assert report.deleted == len(expected)
    after = await astate(backend.async_client(), f"{key_prefix}*")
    assert {k: v for k, v in before.items() if k.decode() not in expected} == after
    again = await run_both(backend, key_prefix)
    assert again.orphans == []
    assert again.foreign_namespaces == ["foreign"]
    # The live namespace still reads back whole.
    store = AsyncRedisStore(backend.async_client(), "live", key_prefix=key_prefix)
    read = await store.load_session_head_meta()
    assert read is not None and read.head_revision == 1
    assert len(await store.list_queued_work("root")) == 2
    assert len(await store.list_queued_work(WEIRD)) == 1


async def test_delete_rechecks_each_key(
    backend: Backend, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A namespace that comes alive (or a queue session that gets listed) after the scan keeps its keys."""
    raw = backend.sync_client()
    live = await busy_namespace(backend, key_prefix, "live")
    ghost = NamespaceKeys(key_prefix, "ghost")
    raw.hset(ghost.blobs, "ref", b"body")
    raw.hset(ghost.nodes, "A", b"x")
    raw.zadd(live.q_all("late"), {"qwb:z": 1})
    real = sweep_module.run_sync
    revived: list[bool] = []

    def racing(client: Any, name: str, keys: list[Any], args: list[Any]) -> Any:
        if name == "sweep_delete" and not revived:
            revived.append(True)
            store = sweep_module.NamespaceKeys(key_prefix, "ghost")
            raw.set(store.meta, b"{}")  # the ghost namespace is claimed by a new writer
            raw.sadd(live.q_sessions, "late")  # and the queue session is listed after all
        return real(client, name, keys, args)

    monkeypatch.setattr(sweep_module, "run_sync", racing)
    report = sweep(raw, key_prefix, delete=True)
    assert revived == [True]
    assert sorted(report.orphan_keys) == sorted([ghost.blobs, ghost.nodes, live.q_all("late")])
    assert report.deleted == 0
    assert raw.exists(ghost.blobs, ghost.nodes, live.q_all("late")) == 3


async def test_prefix_with_glob_characters_is_matched_literally(backend: Backend, key_prefix: str) -> None:
    odd = key_prefix + "[a]*?"
    raw = backend.sync_client()
    ghost = NamespaceKeys(odd, "g")
    raw.set(ghost.blobs, b"1")
    decoy = NamespaceKeys(key_prefix + "a-decoy", "g")  # matched by the unescaped glob `<prefix>[a]*?:*`
    raw.set(decoy.blobs, b"1")
    report = await run_both(backend, odd)
    assert report.orphan_keys == [ghost.blobs]
    assert report.scanned_keys == 1
    state_before = state(raw, f"{key_prefix}*")
    sweep(raw, odd, delete=True)
    assert raw.exists(decoy.blobs) == 1
    assert len(state(raw, f"{key_prefix}*")) == len(state_before) - 1


def test_page_must_be_positive(backend: Backend, key_prefix: str) -> None:
    with pytest.raises(ValueError):
        sweep(backend.sync_client(), key_prefix, page=0)
