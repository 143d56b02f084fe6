"""`sessionfence fleet`: worker processes under injected faults, and the verifier that judges the run.

1. The fleet with every fault kind on its own embedded Redis (through typer's CliRunner): zero violations,
   each fault kind injected, zombies refused, nothing left behind (no worker process, no redis-server).
2. `sessionfence fleet` as a real subprocess (small, kill faults): exit 0 and a JSON report.
3. The verifier is not a rubber stamp: on a kept run, each planted violation (a foreign commit, a forged turn
   acking a batch twice, a batch deleted behind the producer's back, a stale-fence turn) is reported, and
   `--verify-only` exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from typer.testing import CliRunner

from sessionfence.cli import app
from sessionfence.cli.fleet import FleetSettings, delete_run, run_fleet, verify_prefix
from sessionfence.cli.fleet_sim import fleet_key
from sessionfence.embedded import EmbeddedRedis
from sessionfence.models import (
    ActivePath,
    GraphAppend,
    RuntimeCommit,
    SessionNodeRecord,
    TokenLedgerEntry,
    TokenUsage,
)
from sessionfence.sync import RedisStoreFactory

pytestmark = pytest.mark.slow

ENV_WITHOUT_REDIS = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
ENV_WITHOUT_REDIS["COLUMNS"] = "160"


def _port_closed(url: str) -> bool:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) != 0


def test_fleet_with_every_fault_kind_verifies_clean(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    runner = CliRunner()
    args = [
        "fleet",
        "--sessions", "8",
        "--workers", "4",
        "--turns", "400",
        "--faults", "kill,pause,drop",
        "--fault-interval", "0.5",
        "--rate", "40",
        "--seed", "11",
        "--report", str(report_path),
    ]  # fmt: skip
    result = runner.invoke(app, args, env={"REDIS_URL": None, "COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["ok"] is True and report["violations"] == []
    assert report["redis"]["embedded"] is True
    faults = report["faults"]
    assert faults["kill"] > 0 and faults["pause"] > 0 and faults["drop"] > 0, faults
    # paused workers came back as zombies: their stale writes were refused (or at least they were injected)
    assert report["refusals"]["stale_writes_refused"] > 0 or faults["pause"] > 0
    commits, producer = report["commits"], report["producer"]
    assert producer["submitted"] == 400
    assert commits["acked_batches"] + producer["cancelled"] == producer["distinct_batches"]
    assert commits["committed_turns"] == sum(s["head_revision"] for s in report["sessions"])
    assert report["workers"]["incarnations"] >= 4 + faults["kill"]
    assert "VERIFIED" in result.output
    # nothing left behind: workers reaped, the embedded server gone
    assert multiprocessing.active_children() == []
    assert _port_closed(report["redis"]["url"])


def test_fleet_as_a_subprocess_writes_a_report(tmp_path: Path) -> None:
    report_path = tmp_path / "fleet.json"
    args = [
        sys.executable, "-m", "sessionfence", "fleet",
        "--sessions", "3", "--workers", "2", "--turns", "60", "--faults", "kill",
        "--fault-interval", "0.4", "--rate", "10", "--seed", "5", "--report", str(report_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV_WITHOUT_REDIS
    )
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the fleet stops its workers and its redis-server before leaving
        output, _ = proc.communicate(timeout=30)
        pytest.fail(f"fleet did not finish in 90 s:\n{output}")
    assert proc.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["settings"]["faults"] == ["kill"] and report["faults"]["pause"] == 0
    assert report["faults"]["kill"] >= 1
    assert report["producer"]["submitted"] == 60
    assert report["commits"]["committed_turns"] > 0
    assert _port_closed(report["redis"]["url"])


def test_fleet_stops_cleanly_on_sigterm() -> None:
    """A CI timeout or `kill`: workers stopped, the embedded server removed, exit status 130."""
    args = [sys.executable, "-m", "sessionfence", "fleet", "--turns", "100000", "--workers", "2"]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV_WITHOUT_REDIS
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = None
    try:
        for line in proc.stdout:  # the status lines start once production is under way
            lines.append(line)
            if "started a private redis-server" in line:
                url = "redis://" + line.split("redis://")[1].split("/")[0] + "/0"
            if "producing: submitted" in line and "acked 0," not in line:
                break
        assert url is not None, "".join(lines)
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(lines) + output
    assert "interrupted" in output
    assert _port_closed(url)


# -- the verifier detects planted violations --------------------------------------------------------------


@pytest.fixture(scope="module")
def kept_run() -> Iterator[tuple[str, str]]:
    """A clean, kept fleet run on a private server: (url, prefix)."""
    with EmbeddedRedis() as server:
        settings = FleetSettings(sessions=3, workers=2, turns=40, faults=(), seed=3, keep=True)
        report = run_fleet(server.url, settings, _quiet())
        assert report["ok"], report["violations"]
        try:
            yield server.url, report["prefix"]
        finally:
            asyncio.run(_delete(server.url, report["prefix"]))
            shutil.rmtree(report["log_dir"], ignore_errors=True)


def _quiet() -> Any:
    from rich.console import Console

    return Console(file=io.StringIO(), width=160)


async def _delete(url: str, prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        await delete_run(client, prefix)
    finally:
        await client.aclose()


def _snapshot(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}:*")}


@pytest.fixture
def planted(kept_run: tuple[str, str]) -> Iterator[tuple[str, str, redis.Redis, RedisStoreFactory]]:
    """The kept run, restored to its clean state after the test plants something in it."""
    url, prefix = kept_run
    client = redis.Redis.from_url(url)
    before = _snapshot(client, prefix)
    factory = RedisStoreFactory(client, key_prefix=prefix)
    try:
        yield url, prefix, client, factory
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        for key, value in before.items():
            client.restore(key, 0, value)
        client.close()


def _commit_nodes(
    factory: RedisStoreFactory, sid: str, nodes: list[dict[str, Any]], usage: TokenUsage
) -> None:
    """A hand-made commit under a real lease: what a buggy or malicious writer could do."""
    store = factory.store(sid)
    read = store.load_session(ActivePath())
    assert read is not None
    lease = store.try_claim_session_execution_lease(sid, "intruder", 10_000)
    assert lease is not None
    records = [SessionNodeRecord.model_validate(n) for n in nodes]
    commit = RuntimeCommit(
        session_id=sid,
        expected_head_revision=read.head_revision,
        config=read.config,
        agent_frames=[],
        current_agent_frame_id="",
        graph=GraphAppend(records, records[-1].node_id),
        checkpoint=read.checkpoint,
        usage_deltas=[TokenLedgerEntry("fleet", "fleet-sim", usage)],
    )
    store.commit_runtime_state(
        commit.with_session_execution_lease(lease.fence()).releasing_session_execution_lease(lease.completion())
    )


def _last_turn(factory: RedisStoreFactory, sid: str) -> tuple[str, dict[str, Any], int]:
    read = factory.store(sid).load_session(ActivePath())
    assert read is not None and read.graph.nodes
    turn = read.graph.nodes[-2]
    body = (turn.model_extra or {})["body"]
    return read.graph.nodes[-1].node_id, body, read.head_revision


def test_verifier_passes_the_clean_kept_run(kept_run: tuple[str, str]) -> None:
    url, prefix = kept_run
    result = verify_prefix(url, prefix)
    assert result.ok, result.violations
    assert result.committed_turns > 0 and result.acked_batches > 0
    assert result.log_checked  # --keep kept the worker logs, and they agree with Redis


def test_verifier_reports_a_foreign_commit(planted: tuple[str, str, redis.Redis, RedisStoreFactory]) -> None:
    url, prefix, _, factory = planted
    leaf, _, head = _last_turn(factory, "s000")
    node = {"node_id": "bogus", "parent_node_id": leaf, "timestamp": "2026-01-01T00:00:00Z", "kind": "event",
            "event": {"Protocol": {"plugin_id": "intruder", "payload": {}}}}  # fmt: skip
    _commit_nodes(factory, "s000", [node], TokenUsage(1, 1, 0, 0))
    violations = verify_prefix(url, prefix).violations
    assert any("not a fleet turn" in v for v in violations), violations
    assert any(f"head_revision is {head + 1}" in v for v in violations), violations
    assert any("ledger" in v for v in violations), violations


def test_verifier_reports_a_batch_acked_twice_and_a_stale_fence(
    planted: tuple[str, str, redis.Redis, RedisStoreFactory],
) -> None:
    """A forged fleet turn that re-acks the previous turn's batches under an old fencing token."""
    url, prefix, _, factory = planted
    leaf, body, head = _last_turn(factory, "s001")
    forged = {**body, "rev": head + 1, "claim_id": "qwc:999:1", "lease_fence": 1}
    forged["batches"] = [{**b, "seq": 999} for b in body["batches"]]
    forged["claim_fence"] = 1
    turn = {"node_id": "qwc:999:1/turn", "parent_node_id": leaf, "timestamp": "2026-01-01T00:00:00Z",
            "kind": "plugin", "plugin_type": "sessionfence.fleet.turn", "body": forged}  # fmt: skip
    reply = {"node_id": "qwc:999:1/reply", "parent_node_id": "qwc:999:1/turn",
             "timestamp": "2026-01-01T00:00:00Z", "kind": "event",
             "event": {"Conversation": {"id": "m", "role": "Assistant", "parts": []}}}  # fmt: skip
    usage = TokenUsage(**forged["usage"])
    _commit_nodes(factory, "s001", [turn, reply], usage)
    violations = verify_prefix(url, prefix).violations
    acked = body["batches"][0]["id"]
    assert any(f"batch {acked} was acked 2 times" in v for v in violations), violations
    assert any("committed under fencing token 1" in v for v in violations), violations


def test_verifier_reports_a_batch_lost_behind_the_producers_back(
    planted: tuple[str, str, redis.Redis, RedisStoreFactory],
) -> None:
    """The producer recorded a batch that then vanished without a turn acking it (nor a recorded cancel)."""
    url, prefix, client, factory = planted
    from sessionfence.models import DeliveryPolicy, QueuedWorkBatchDraft, SlotPolicy

    store = factory.store("s002")
    draft = QueuedWorkBatchDraft(
        session_id="s002",
        delivery_policy=DeliveryPolicy.EARLIEST_SAFE_BOUNDARY,
        slot_policy=SlotPolicy.JOIN,
        available_at_ms=4_000_000_000_000,  # never due: no worker could take it anyway
        payloads=[{"type": "turn_input", "input": {"items": [], "image_blobs": {}}}],
    )
    batch = store.enqueue_queued_work(draft)
    info = {"sid": "s002", "kind": "user", "seq": batch.enqueue_seq, "items": 1, "slot": "join",
            "delivery": "earliest_safe_boundary", "merge": "never", "available_at_ms": batch.available_at_ms,
            "enqueued_at_ms": batch.enqueued_at_ms, "source_key": None}  # fmt: skip
    client.hset(fleet_key(prefix, "batches"), batch.batch_id, orjson.dumps(info))
    # still queued: the run is undrained
    violations = verify_prefix(url, prefix).violations
    assert any(v.startswith("undrained: s002") for v in violations), violations
    # deleted without the producer recording a cancel: lost
    assert store.cancel_queued_work_batch("s002", batch.batch_id) is not None
    violations = verify_prefix(url, prefix).violations
    lost = [v for v in violations if f"batch {batch.batch_id}" in v and "gone without being acked" in v]
    assert lost, violations
    # the command line says so too
    result = CliRunner().invoke(app, ["fleet", "--redis-url", url, "--verify-only", prefix])
    assert result.exit_code == 1, result.output
    assert "gone without being acked" in result.output


def test_verify_only_on_an_unknown_prefix_fails(kept_run: tuple[str, str]) -> None:
    url, _ = kept_run
    result = CliRunner().invoke(app, ["fleet", "--redis-url", url, "--verify-only", "sffleetnothere"])
    assert result.exit_code == 1
    assert "no fleet run is recorded" in result.output


# -- a runtime bug the fleet found ---------------------------------------------------------------------------


async def test_keep_alive_honours_a_swallowed_cancellation(redis_url: str, key_prefix: str) -> None:
    """redis.asyncio may swallow a cancellation that lands mid-command (the call returns normally). The turn
    cancels its keep-alive when the handler returns; if the keep-alive kept looping, the turn would hang while
    renewing its lease and claim forever (the fleet saw this as a session that never drained)."""
    import redis.asyncio as aredis

    from sessionfence.models import (
        DeliveryPolicy,
        QueuedWorkBatchDraft,
        QueuedWorkClaimBoundary,
        SessionRelation,
        SessionStoreCreateRequest,
        SlotPolicy,
    )
    from sessionfence.store import AsyncRedisStore, AsyncRedisStoreFactory
    from sessionfence.worker import SessionWorker, TurnContext, TurnResult

    class SwallowingStore(AsyncRedisStore):
        async def renew_session_execution_lease(self, fence: Any, lease_ttl_ms: int) -> Any:
            with contextlib.suppress(asyncio.CancelledError):  # as redis.asyncio can do mid-command
                await asyncio.sleep(0.2)
            return await super().renew_session_execution_lease(fence, lease_ttl_ms)

    client = aredis.Redis.from_url(redis_url)
    try:
        factory = AsyncRedisStoreFactory(client, key_prefix=key_prefix)
        await factory.create_store(SessionStoreCreateRequest("s", SessionRelation.root(), "m", "p"))
        store = SwallowingStore(client, "s", key_prefix=key_prefix, bound_session_id="s")
        await store.enqueue_queued_work(
            QueuedWorkBatchDraft(
                session_id="s",
                delivery_policy=DeliveryPolicy.EARLIEST_SAFE_BOUNDARY,
                slot_policy=SlotPolicy.JOIN,
                payloads=[{"type": "turn_input", "input": {"items": [], "image_blobs": {}}}],
            )
        )
        lease = await store.try_claim_session_execution_lease("s", "w", 3000)
        assert lease is not None
        claim = await store.claim_ready_queued_work(
            "s", lease.fence(), "w", QueuedWorkClaimBoundary.IDLE, 3000, 1
        )
        assert claim is not None

        async def handler(ctx: TurnContext) -> TurnResult:
            raise AssertionError("not called")

        worker = SessionWorker(factory, "w", handler, lease_ttl_ms=300, claim_ttl_ms=300)
        never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        keeper = asyncio.create_task(
            worker._keep_alive(store, lease, claim, never, asyncio.Event())  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.15)  # the keep-alive is inside its first renewal now
        keeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(keeper, 2.0)
        never.cancel()
        await factory.delete_session("s")
    finally:
        await client.aclose()
