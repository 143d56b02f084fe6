"""Admin commands: `sessions`, `show`, `queue`, `vacuum`, `gc`, `export`, `import` and `watch`.

Also the namespace export format (`export_namespace` / `import_namespace`): a faithful, portable dump of every
key of one session's namespace for backup and migration. `lua/export_namespace.lua` reads the whole namespace
in one atomic script; `lua/import_namespace.lua` recreates every key exactly (streams keep their entry ids and
last id) and refuses a non-empty target unless forced. The document names keys by *part* (``head``,
``q_all`` of session ``S``, ...), never by full key name, so it can be imported under another key prefix or
session id. Every value is base64, so binary contents survive.

Renaming (``--as``) rewrites every place the session id is stored (head binding, meta, lease and fencing rows,
turn-record fields, batch records, source-key index, queue session set, attachment rows). The stored turn
commit hashes were computed over the old id, so retrying a pre-export turn under the new id is refused as a
conflicting turn instead of being replayed; the lease token is derived from the session id, so a lease held
at export time is not usable under the new id (it simply expires).
"""

from __future__ import annotations

import base64
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import redis
import redis.cluster
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..codec import signal_ready_call, texts
from ..errors import StoreError
from ..keys import NamespaceKeys, index_key
from ..models import ActivePath, QueuedWorkBatch
from ..scripts import SyncClient, run_sync
from ..sync import RedisStore, RedisStoreFactory
from .connect import redis_target

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportFormatError",
    "ImportReport",
    "NamespaceNotEmpty",
    "export_namespace",
    "import_namespace",
    "open_client",
    "register",
]

EXPORT_FORMAT = "sessionfence-namespace-export"
EXPORT_VERSION = 1
QUEUE_PARTS = ("q_all", "q_ready", "q_delayed", "q_held")

# ------------------------------------------------------------------------------------------------------------
# Connections


def open_client(url: str) -> SyncClient:
    """A bytes client for ``url``: a cluster client when the server runs in cluster mode, else a plain one."""
    client = redis.Redis.from_url(url)
    try:
        info: Any = client.info("cluster")
    except redis.ResponseError:  # INFO not permitted: assume standalone
        return client
    except BaseException:
        client.close()
        raise
    if int(info.get("cluster_enabled", 0) or 0) == 1:
        client.close()
        return redis.cluster.RedisCluster.from_url(url)
    return client


def server_time_ms(client: SyncClient) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# ------------------------------------------------------------------------------------------------------------
# Export / import


class ExportFormatError(ValueError):
    """The document is not a sessionfence namespace export this version understands (or cannot be renamed)."""


class NamespaceNotEmpty(Exception):
    """Import refused: the target namespace holds data (pass force=True / --force to replace it)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"target namespace is not empty ({key} exists); pass --force to replace it")
        self.key = key


@dataclass
class ImportReport:
    key_prefix: str
    namespace: str
    session_id: str
    keys_written: int
    renamed: bool

    def to_wire(self) -> dict[str, Any]:
        return {
            "key_prefix": self.key_prefix,
            "namespace": self.namespace,
            "session_id": self.session_id,
            "keys_written": self.keys_written,
            "renamed": self.renamed,
        }


@dataclass
class _Record:
    """One key, decoded: ``value`` is bytes (string), list[tuple[bytes, bytes]] (hash), list[bytes] (list,
    set), list[tuple[bytes, str]] (zset: member, score) or _Stream."""

    part: str
    session: str | None
    type: str
    ttl_ms: int | None
    value: Any


@dataclass
class _Stream:
    last_id: str
    max_deleted_id: str | None
    entries_added: int | None
    entries: list[tuple[str, list[tuple[bytes, bytes]]]] = field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ExportFormatError(f"expected a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError as exc:
        raise ExportFormatError(f"bad base64 value: {exc}") from exc


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> list[tuple[bytes, bytes]]:
    return [(bytes(flat[i]), bytes(flat[i + 1])) for i in range(0, len(flat), 2)]


def _queue_keys(keys: NamespaceKeys, session_id: str) -> list[str]:
    return [keys.q_all(session_id), keys.q_ready(session_id), keys.q_delayed(session_id), keys.q_held(session_id)]


def _fixed_parts(keys: NamespaceKeys) -> list[tuple[str, str]]:
    return [(key[len(keys.base) :], key) for key in keys.fixed()]


def _encode_value(kind: str, contents: Any) -> Any:
    if kind == "string":
        return _b64(bytes(contents))
    if kind == "hash":
        return [[_b64(f), _b64(v)] for f, v in sorted(_pairs(contents))]
    if kind == "list":
        return [_b64(bytes(x)) for x in contents]
    if kind == "set":
        return [_b64(x) for x in sorted(bytes(m) for m in contents)]
    if kind == "zset":
        return [[_b64(bytes(contents[i])), _s(contents[i + 1])] for i in range(0, len(contents), 2)]
    if kind == "stream":
        last, max_deleted, added, entries = contents
        return {
            "last_id": _s(last),
            "max_deleted_id": _s(max_deleted) or None,
            "entries_added": int(_s(added)) if _s(added) else None,
            "entries": [{"id": _s(eid), "fields": [[_b64(f), _b64(v)] for f, v in _pairs(fv)]} for eid, fv in entries],
        }
    raise ExportFormatError(f"unexpected key type {kind!r}")


def export_namespace(client: SyncClient, key_prefix: str, namespace: str) -> dict[str, Any]:
    """One atomic snapshot of every key of ``namespace`` as a JSON-ready document (format version 1)."""
    keys = NamespaceKeys(key_prefix, namespace)
    fixed = _fixed_parts(keys)
    qs_index = [key for _, key in fixed].index(keys.q_sessions) + 1
    for _ in range(100):
        members: Any = client.smembers(keys.q_sessions)
        sessions = sorted(texts(members))
        per_session = [key for s in sessions for key in _queue_keys(keys, s)]
        reply = run_sync(client, "export_namespace", [key for _, key in fixed] + per_session, [qs_index, *sessions])
        if reply != b"retry":
            break
    else:  # pragma: no cover - a producer adding queue sessions 100 times in a row
        raise StoreError(f"export of {namespace!r} kept racing new queue sessions")
    seconds, micros, rows = reply
    entries: list[dict[str, Any]] = []
    session_id = namespace
    meta_session: str | None = None
    for index, kind_raw, pttl, contents in rows:
        kind = _s(kind_raw)
        j = int(index) - 1
        entry: dict[str, Any]
        if j < len(fixed):
            part = fixed[j][0]
            entry = {"part": part}
        else:
            j -= len(fixed)
            part = QUEUE_PARTS[j % 4]
            entry = {"part": part, "session": sessions[j // 4]}
        entry["type"] = kind
        entry["ttl_ms"] = int(pttl) if int(pttl) > 0 else None
        entry["value"] = _encode_value(kind, contents)
        entries.append(entry)
        if part == "head" and kind == "hash":
            head = dict(_pairs(contents))
            if b"session_id" in head:
                session_id = head[b"session_id"].decode()
        elif part == "meta" and kind == "string":
            with contextlib.suppress(Exception):
                meta_session = str(orjson.loads(bytes(contents))["session_id"])
    if session_id == namespace and meta_session is not None:
        session_id = meta_session
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "key_prefix": key_prefix,
        "namespace": namespace,
        "session_id": session_id,
        "exported_at_ms": int(seconds) * 1000 + int(micros) // 1000,
        "keys": entries,
    }


def _decode_entry(entry: Any) -> _Record:
    if not isinstance(entry, dict):
        raise ExportFormatError("every key entry must be an object")
    part, kind = entry.get("part"), entry.get("type")
    value: Any = entry.get("value")
    session = entry.get("session")
    ttl = entry.get("ttl_ms")
    if not isinstance(part, str) or not isinstance(kind, str):
        raise ExportFormatError("a key entry lacks its part or type")
    if session is not None and not isinstance(session, str):
        raise ExportFormatError(f"key entry {part}: session must be a string")
    if ttl is not None and (not isinstance(ttl, int) or ttl <= 0):
        raise ExportFormatError(f"key entry {part}: ttl_ms must be a positive integer or null")
    try:
        decoded: Any
        if kind == "string":
            decoded = _unb64(value)
        elif kind == "hash":
            decoded = [(_unb64(f), _unb64(v)) for f, v in value]
        elif kind in ("list", "set"):
            decoded = [_unb64(x) for x in value]
        elif kind == "zset":
            decoded = [(_unb64(m), score) for m, score in value]
            for _, score in decoded:
                if not isinstance(score, str):
                    raise ExportFormatError(f"key entry {part}: zset scores must be strings")
                float(score)  # a ValueError names a score Redis would refuse
        elif kind == "stream":
            decoded = _Stream(
                last_id=str(value["last_id"]),
                max_deleted_id=value.get("max_deleted_id"),
                entries_added=value.get("entries_added"),
                entries=[(str(e["id"]), [(_unb64(f), _unb64(v)) for f, v in e["fields"]]) for e in value["entries"]],
            )
        else:
            raise ExportFormatError(f"key entry {part}: unknown type {kind!r}")
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ExportFormatError):
            raise
        raise ExportFormatError(f"key entry {part} ({kind}) is malformed: {exc}") from exc
    return _Record(part, session, kind, ttl, decoded)


def _json_edit(raw: bytes, what: str, edit: Callable[[Any], Any]) -> bytes:
    """Decode, edit and re-encode a stored JSON record, refusing when re-encoding would change other bytes."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ExportFormatError(f"cannot rename: {what} is not JSON ({exc})") from exc
    if orjson.dumps(obj) != raw:
        raise ExportFormatError(f"cannot rename: {what} is not in sessionfence's storage form")
    return orjson.dumps(edit(obj))


def _rename(record: _Record, old: str, new: str) -> _Record:
    """Rewrite every stored mention of session ``old`` as ``new`` (the key layout of docs/keys.md)."""
    ob, nb = old.encode(), new.encode()
    v = record.value
    part = record.part

    def field_session(obj: Any) -> Any:
        if isinstance(obj, dict) and obj.get("session_id") == old:
            obj["session_id"] = new
        return obj

    def pair_session(obj: Any) -> Any:
        if isinstance(obj, list) and len(obj) == 2 and obj[0] == old:
            obj[0] = new
        return obj

    if part == "head" and record.type == "hash":
        v = [(f, nb if f == b"session_id" and x == ob else x) for f, x in v]
    elif part == "meta" and record.type == "string":
        v = _json_edit(v, "the session meta", field_session)
    elif part in ("leases", "fencing") and record.type == "hash":
        v = [(nb if f == ob else f, x) for f, x in v]
    elif part == "turns" and record.type == "hash":
        v = [(_json_edit(f, "a turn record field", pair_session), x) for f, x in v]
    elif part in ("q_batches", "att") and record.type == "hash":
        v = [(f, _json_edit(x, f"a {part} record", field_session)) for f, x in v]
    elif part == "q_source" and record.type == "hash":
        v = [(_json_edit(f, "a source-key field", pair_session), x) for f, x in v]
    elif part == "q_srcof" and record.type == "hash":
        v = [(f, _json_edit(x, "a source-key field", pair_session)) for f, x in v]
    elif part == "q_sessions" and record.type == "set":
        v = [nb if m == ob else m for m in v]
    session = new if record.session == old else record.session
    return _Record(part, session, record.type, record.ttl_ms, v)


def _record_args(record: _Record) -> list[Any]:
    v = record.value
    if record.type == "string":
        return [v]
    if record.type == "hash":
        return [len(v), *(x for pair in v for x in pair)]
    if record.type in ("list", "set"):
        return [len(v), *v]
    if record.type == "zset":
        return [len(v), *(x for pair in v for x in pair)]
    s: _Stream = v
    out: list[Any] = [
        s.last_id, s.max_deleted_id or "", "" if s.entries_added is None else str(s.entries_added), len(s.entries)
    ]
    for eid, fields in s.entries:
        out += [eid, len(fields), *(x for pair in fields for x in pair)]
    return out


def import_namespace(
    client: SyncClient,
    document: Any,
    *,
    key_prefix: str = "sf",
    as_session: str | None = None,
    force: bool = False,
) -> ImportReport:
    """Recreate an exported namespace under ``key_prefix`` (and session ``as_session`` when given)."""
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not a sessionfence namespace export (format must be {EXPORT_FORMAT!r})")
    if document.get("version") != EXPORT_VERSION:
        raise ExportFormatError(
            f"unsupported export format version {document.get('version')!r} (this sessionfence reads {EXPORT_VERSION})"
        )
    namespace, old_sid, raw_keys = document.get("namespace"), document.get("session_id"), document.get("keys")
    if not isinstance(namespace, str) or not isinstance(old_sid, str) or not isinstance(raw_keys, list):
        raise ExportFormatError("the export lacks namespace, session_id or keys")
    if as_session is not None and not as_session:
        raise ExportFormatError("the new session id must not be empty")
    records = [_decode_entry(e) for e in raw_keys]
    target_ns = as_session or namespace
    new_sid = as_session or old_sid
    renamed = new_sid != old_sid
    if renamed:
        records = [_rename(r, old_sid, new_sid) for r in records]

    keys = NamespaceKeys(key_prefix, target_ns)
    fixed = _fixed_parts(keys)
    fixed_index = {part: i + 1 for i, (part, _) in enumerate(fixed)}
    for r in records:
        if r.session is None and r.part not in fixed_index:
            raise ExportFormatError(f"unknown key part {r.part!r}")
        if r.session is not None and r.part not in QUEUE_PARTS:
            raise ExportFormatError(f"unknown per-session key part {r.part!r}")
    seen_keys = {(r.part, r.session) for r in records}
    if len(seen_keys) != len(records):
        raise ExportFormatError("the export names a key twice")
    imported_sessions = sorted({r.session for r in records if r.session is not None})
    qs_index, fencing_index = fixed_index["q_sessions"], fixed_index["fencing"]

    for _ in range(100):
        members: Any = client.smembers(keys.q_sessions)
        existing = sorted(texts(members))
        key_list = [key for _, key in fixed]
        key_list += [key for s in existing for key in _queue_keys(keys, s)]
        base = len(key_list)
        key_list += [key for s in imported_sessions for key in _queue_keys(keys, s)]
        args: list[Any] = [qs_index, fencing_index, "1" if force else "0", len(existing), *existing, len(records)]
        for r in records:
            if r.session is None:
                index = fixed_index[r.part]
            else:
                index = base + 4 * imported_sessions.index(r.session) + QUEUE_PARTS.index(r.part) + 1
            args += [index, r.type, r.ttl_ms or 0, *_record_args(r)]
        reply = run_sync(client, "import_namespace", key_list, args)
        if reply != b"retry":
            break
    else:  # pragma: no cover - a producer adding queue sessions 100 times in a row
        raise StoreError(f"import into {target_ns!r} kept racing new queue sessions")
    if _s(reply[0]) == "not_empty":
        raise NamespaceNotEmpty(_s(reply[1]))
    written = int(reply[1])

    parts = {r.part for r in records}
    if parts & {"meta", "head"}:
        client.zadd(index_key(key_prefix), {target_ns: 0})
    if any(r.part == "q_batches" and r.value for r in records):
        for s in imported_sessions:  # wake workers: the restored queue may hold ready work
            call = signal_ready_call(key_prefix, s, 0)
            run_sync(client, call.script, call.keys, call.args)
    return ImportReport(key_prefix, target_ns, new_sid, written, renamed)


# ------------------------------------------------------------------------------------------------------------
# Reading state for show / queue


def _parse_lease_row(row: bytes | None) -> dict[str, Any] | None:
    """Lease row ``"<schema> <fencing> <claimed_at> <expires_at> <owner>"`` (owner empty = released)."""
    if row is None:
        return None
    parts = row.decode(errors="replace").split(" ", 4)
    if len(parts) != 5:
        return {"raw": row.decode(errors="replace")}
    _, fencing, claimed, expires, owner = parts
    return {
        "owner": owner or None,
        "fencing_token": int(fencing),
        "claimed_at_ms": int(claimed),
        "expires_at_ms": int(expires),
    }


def lease_summary(client: SyncClient, keys: NamespaceKeys, session_id: str, now_ms: int) -> dict[str, Any]:
    row: Any = client.hget(keys.leases, session_id)
    high: Any = client.hget(keys.fencing, session_id)
    parsed = _parse_lease_row(row)
    out: dict[str, Any] = {"fencing_high_water": int(high) if high is not None else None}
    if parsed is None:
        out.update(state="none", owner=None)
    elif "raw" in parsed:
        out.update(state="unparseable", owner=None, raw=parsed["raw"])
    elif parsed["owner"] is None:
        out.update(state="released", **parsed)
    elif parsed["expires_at_ms"] > now_ms:
        out.update(state="held", expires_in_ms=parsed["expires_at_ms"] - now_ms, **parsed)
    else:
        out.update(state="expired", **parsed)
    return out


def queue_rows(client: SyncClient, store: RedisStore, session_id: str, now_ms: int) -> list[dict[str, Any]]:
    """Every batch of the session with its claim state (``q_state``) and availability."""
    batches: list[QueuedWorkBatch] = store.list_queued_work(session_id)
    states: list[Any] = list(client.hmget(store.keys.q_state, [b.batch_id for b in batches])) if batches else []
    rows = []
    for batch, raw in zip(batches, states, strict=True):
        claim: dict[str, Any] | None = None
        if raw is not None:
            parts = bytes(raw).decode(errors="replace").split(" ", 6)
            if len(parts) == 7 and parts[4] != "-":
                claim = {
                    "claim_id": parts[4],
                    "owner": parts[6],
                    "fencing_token": int(parts[1]),
                    "claimed_at_ms": int(parts[2]),
                    "expires_at_ms": int(parts[3]),
                    "live": int(parts[3]) > now_ms,
                }
        available = batch.available_at_ms <= now_ms
        if claim is not None and claim["live"]:
            state = "claimed"
        elif not available:
            state = "delayed"
        else:
            state = "ready"
        rows.append(
            {
                "batch_id": batch.batch_id,
                "enqueue_seq": batch.enqueue_seq,
                "state": state,
                "pending": state != "claimed",
                "available": available,
                "available_at_ms": batch.available_at_ms,
                "enqueued_at_ms": batch.enqueued_at_ms,
                "delivery_policy": batch.delivery_policy.value,
                "slot_policy": batch.slot_policy.value,
                "merge_key": batch.merge_key.to_wire(),
                "source_key": batch.source_key,
                "items": len(batch.items),
                "claim": claim,
            }
        )
    return rows


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _session_exists(client: SyncClient, keys: NamespaceKeys) -> bool:
    return bool(client.exists(keys.meta, keys.head))


# ------------------------------------------------------------------------------------------------------------
# CLI plumbing

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        help="Redis to use. Without it (and without REDIS_URL) a private embedded redis-server is started "
        "and removed on exit.",
    ),
]
KeyPrefix = Annotated[
    str,
    typer.Option("--key-prefix", envvar="SESSIONFENCE_KEY_PREFIX", help="Key prefix the stores use."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]
SessionArg = Annotated[str, typer.Argument(help="Session id (a factory maps it to its namespace).", show_default=False)]


def _err() -> Console:
    return Console(stderr=True)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _print_json(obj: Any) -> None:
    typer.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


@contextlib.contextmanager
def connected(redis_url: str | None) -> Iterator[SyncClient]:
    """A client on the chosen Redis; connection and store errors become a one-line message and exit 1."""
    err = _err()
    try:
        with redis_target(redis_url, err) as url:
            client = open_client(url)
            try:
                yield client
            finally:
                client.close()
    except (redis.RedisError, StoreError, ExportFormatError, NamespaceNotEmpty, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc) or type(exc).__name__)}")
        raise typer.Exit(1) from None


def _factory(client: SyncClient, key_prefix: str) -> RedisStoreFactory:
    return RedisStoreFactory(client, key_prefix=key_prefix)


def _require_session(client: SyncClient, keys: NamespaceKeys, session_id: str) -> None:
    if not _session_exists(client, keys):
        _err().print(f"[red]error:[/red] no session {escape(session_id)!r} under key prefix {escape(keys.prefix)!r}")
        raise typer.Exit(1)


def _relation_text(relation: dict[str, Any]) -> str:
    if relation.get("kind") == "child":
        return f"child of {relation.get('parent_session_id')}"
    return "root"


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ------------------------------------------------------------------------------------------------------------
# Commands


def sessions(redis_url: RedisUrl = None, key_prefix: KeyPrefix = "sf", json_output: JsonFlag = False) -> None:
    """List the sessions in the factory index: id, cwd, relation, user message count and first message."""
    with connected(redis_url) as client:
        infos = _factory(client, key_prefix).list_sessions()
    if json_output:
        _print_json([i.to_wire() for i in infos])
        return
    out = _out()
    if not infos:
        out.print(f"no sessions under key prefix {escape(key_prefix)!r}")
        return
    table = Table(title=f"{len(infos)} session(s) under key prefix {escape(key_prefix)!r}")
    for column in ("session", "cwd", "relation", "user msgs", "first message"):
        table.add_column(column, overflow="fold")
    for i in infos:
        table.add_row(
            escape(i.session_id),
            escape(i.cwd or ""),
            escape(_relation_text(i.relation.to_wire())),
            str(i.user_message_count),
            escape(_one_line(i.first_user_message)),
        )
    out.print(table)


def show(
    session_id: SessionArg, redis_url: RedisUrl = None, key_prefix: KeyPrefix = "sf", json_output: JsonFlag = False
) -> None:
    """Show one session: head revision, graph size and active path, lease holder and expiry, queue summary."""
    with connected(redis_url) as client:
        store = _factory(client, key_prefix).store(session_id)
        keys = store.keys
        _require_session(client, keys, session_id)
        now = server_time_ms(client)
        meta = store.load_session_meta()
        head = store.load_session_head_meta()
        read = store.load_session(ActivePath())
        stored_nodes = int(client.hlen(keys.nodes))
        tombstoned = int(client.scard(keys.tombstones))
        turns = int(client.hlen(keys.turns))
        attachments = int(client.hlen(keys.att))
        uncommitted = int(client.zcard(keys.att_uncommitted))
        lease = lease_summary(client, keys, session_id, now)
        queue = queue_rows(client, store, session_id, now)
    summary = {
        "total": len(queue),
        "ready": sum(r["state"] == "ready" for r in queue),
        "delayed": sum(r["state"] == "delayed" for r in queue),
        "claimed": sum(r["state"] == "claimed" for r in queue),
        "pending": sum(r["pending"] for r in queue),
    }
    doc: dict[str, Any] = {
        "session_id": session_id,
        "key_prefix": key_prefix,
        "server_time_ms": now,
        "meta": meta.to_wire() if meta else None,
        "head_revision": head.head_revision if head else 0,
        "graph_node_count": head.graph_node_count if head else 0,
        "stored_node_count": stored_nodes,
        "tombstoned_node_count": tombstoned,
        "leaf_node_id": head.leaf_node_id if head else None,
        "active_path": [n.node_id for n in read.graph.nodes] if read else [],
        "config": head.config.to_wire() if head else None,
        "checkpoint_ref": head.checkpoint_ref if head else None,
        "token_ledger": [e.to_wire() for e in read.token_ledger] if read else [],
        "turn_records": turns,
        "attachments": {"total": attachments, "uncommitted": uncommitted},
        "lease": lease,
        "queue": summary,
    }
    if json_output:
        _print_json(doc)
        return
    out = _out()
    out.print(f"[bold]session {escape(session_id)}[/bold] (key prefix {escape(key_prefix)!r})")
    if meta:
        out.print(
            f"  meta: name {escape(meta.session_name)!r}, model {escape(meta.model)!r}, "
            f"created {escape(meta.created_at)}"
            f", cwd {escape(meta.cwd or '-')}, {escape(_relation_text(meta.relation.to_wire()))}"
        )
    out.print(f"  head revision: {doc['head_revision']}")
    out.print(
        f"  graph: {doc['graph_node_count']} node(s) at the last commit; now {stored_nodes} stored "
        f"({tombstoned} tombstoned), leaf {escape(doc['leaf_node_id'] or '-')}"
    )
    path = doc["active_path"]
    out.print(f"  active path ({len(path)}): {escape(' -> '.join(path) or '-')}")
    for e in doc["token_ledger"]:
        u = e["usage"]
        out.print(
            f"  usage {escape(e['source'])}/{escape(e['model'])}: "
            f"input {u['input_tokens']}, output {u['output_tokens']}"
        )
    out.print(f"  turn records: {turns}; attachments: {attachments} ({uncommitted} uncommitted)")
    state = lease["state"]
    if state == "held":
        out.print(
            f"  lease: held by {escape(lease['owner'])!r}, fencing token {lease['fencing_token']}, expires "
            f"{_iso(lease['expires_at_ms'])} (in {lease['expires_in_ms'] / 1000:.1f} s)"
        )
    elif state == "expired":
        out.print(
            f"  lease: expired (last holder {escape(lease['owner'])!r}, fencing token {lease['fencing_token']}, "
            f"expired {_iso(lease['expires_at_ms'])}): free"
        )
    elif state == "released":
        out.print(f"  lease: released (last fencing token {lease['fencing_token']}): free")
    else:
        out.print(f"  lease: {state}: free")
    high = lease["fencing_high_water"]
    out.print(f"  fencing high-water mark: {high if high is not None else '-'}")
    out.print(
        f"  queue: {summary['total']} batch(es): {summary['ready']} ready, {summary['delayed']} delayed, "
        f"{summary['claimed']} claimed ({summary['pending']} pending)"
    )


def queue(
    session_id: SessionArg, redis_url: RedisUrl = None, key_prefix: KeyPrefix = "sf", json_output: JsonFlag = False
) -> None:
    """List a session's queued work in enqueue order: claim state, availability and policies."""
    with connected(redis_url) as client:
        store = _factory(client, key_prefix).store(session_id)
        now = server_time_ms(client)
        rows = queue_rows(client, store, session_id, now)
    if json_output:
        _print_json(rows)
        return
    out = _out()
    if not rows:
        out.print(f"no queued work for session {escape(session_id)!r}")
        return
    table = Table(title=f"queued work of {escape(session_id)} ({len(rows)} batch(es))")
    for column in ("seq", "batch", "state", "available", "delivery/slot", "merge", "items", "claim"):
        table.add_column(column, overflow="fold")
    for r in rows:
        claim = r["claim"]
        claim_text = "-"
        if claim is not None:
            lapsed = "" if claim["live"] else " (lapsed)"
            claim_text = f"{claim['owner']} until {_iso(claim['expires_at_ms'])}{lapsed}"
        merge = r["merge_key"]
        merge_text = f"group:{merge['group']}" if isinstance(merge, dict) else str(merge)
        table.add_row(
            str(r["enqueue_seq"]),
            escape(r["batch_id"]),
            r["state"],
            "now" if r["available"] else _iso(r["available_at_ms"]),
            f"{r['delivery_policy']}/{r['slot_policy']}",
            escape(merge_text),
            str(r["items"]),
            escape(claim_text),
        )
    out.print(table)


def vacuum(
    session_id: SessionArg, redis_url: RedisUrl = None, key_prefix: KeyPrefix = "sf", json_output: JsonFlag = False
) -> None:
    """Remove a session's tombstoned graph nodes for good (contract §2.14) and print the report."""
    with connected(redis_url) as client:
        store = _factory(client, key_prefix).store(session_id)
        _require_session(client, store.keys, session_id)
        report = store.vacuum()
    if json_output:
        _print_json(report.to_wire())
        return
    _out().print(f"vacuum {escape(session_id)}: removed {report.removed_node_count} tombstoned node(s)")


def gc(
    session_id: SessionArg, redis_url: RedisUrl = None, key_prefix: KeyPrefix = "sf", json_output: JsonFlag = False
) -> None:
    """Delete a session's blobs no head or turn record references (contract §2.13) and print the report."""
    with connected(redis_url) as client:
        store = _factory(client, key_prefix).store(session_id)
        _require_session(client, store.keys, session_id)
        report = store.gc_unreachable()
    if json_output:
        _print_json(report.to_wire())
        return
    _out().print(
        f"gc {escape(session_id)}: {report.root_count} root(s), kept {report.retained_blob_count} blob(s), "
        f"deleted {report.deleted_blob_count}"
    )


def export(
    session_id: SessionArg,
    redis_url: RedisUrl = None,
    key_prefix: KeyPrefix = "sf",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the export to this file instead of stdout.")
    ] = None,
) -> None:
    """Dump every key of one session's namespace as JSON (binary-safe), e.g. `sessionfence export S > s.json`."""
    with connected(redis_url) as client:
        keys = NamespaceKeys(key_prefix, session_id)
        doc = export_namespace(client, key_prefix, session_id)
    if not any(e["part"] != "fencing" for e in doc["keys"]):
        _err().print(f"[red]error:[/red] no session {escape(session_id)!r} under key prefix {escape(keys.prefix)!r}")
        raise typer.Exit(1)
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        typer.echo(data.decode(), nl=False)
    else:
        output.write_bytes(data)
        _err().print(f"exported {len(doc['keys'])} key(s) of {escape(session_id)} to {escape(str(output))}")


def import_(
    file: Annotated[str, typer.Argument(help="Export file to restore ('-' reads standard input).", show_default=False)],
    as_session: Annotated[
        str | None, typer.Option("--as", help="Restore under this session id instead of the exported one.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the target session's data if it is not empty.")
    ] = False,
    redis_url: RedisUrl = None,
    key_prefix: KeyPrefix = "sf",
    json_output: JsonFlag = False,
) -> None:
    """Restore a session exported with `sessionfence export` (refuses a non-empty target unless --force)."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        document = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        _err().print(f"[red]error:[/red] cannot read {escape(file)}: {escape(str(exc))}")
        raise typer.Exit(1) from None
    with connected(redis_url) as client:
        report = import_namespace(client, document, key_prefix=key_prefix, as_session=as_session, force=force)
    if json_output:
        _print_json(report.to_wire())
        return
    _out().print(
        f"imported {report.keys_written} key(s) into session {escape(report.session_id)} "
        f"(key prefix {escape(report.key_prefix)!r}{', renamed' if report.renamed else ''})"
    )


_MODES = {"U": "unchanged", "A": "append", "R": "replace"}


def watch(
    session_id: SessionArg,
    redis_url: RedisUrl = None,
    key_prefix: KeyPrefix = "sf",
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Exit after this many events (default: run until Ctrl-C).")
    ] = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Replay the retained events first instead of only new ones.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per event (JSON lines).")] = False,
) -> None:
    """Follow a session's commits (the `events` stream, XREAD BLOCK): revision, turn, mode, nodes and leaf."""
    seen = 0
    with connected(redis_url) as client:
        key = NamespaceKeys(key_prefix, session_id).events
        last = "0-0"
        if not from_start:
            newest: Any = client.xrevrange(key, "+", "-", count=1)
            if newest:
                last = _s(newest[0][0])
        out = _out()
        try:
            while count is None or seen < count:
                reply: Any = client.xread({key: last}, count=100, block=2000)
                streams = reply.items() if isinstance(reply, dict) else (reply or [])
                for _stream, entries in streams:
                    for entry_id, fields in entries:
                        last = _s(entry_id)
                        f = {_s(k): _s(v) for k, v in fields.items()}
                        event: dict[str, Any] = {
                            "id": last,
                            "rev": int(f.get("rev", "0")),
                            "turn": f.get("turn") or None,
                            "mode": _MODES.get(f.get("mode", ""), f.get("mode")),
                            "nodes": int(f.get("nodes", "0")),
                            "leaf": f.get("leaf") or None,
                            "at_ms": int(f.get("at", "0")),
                        }
                        if json_output:
                            typer.echo(orjson.dumps(event).decode())
                        else:
                            out.print(
                                f"rev {event['rev']}  turn {escape(event['turn'] or '-')}  mode {event['mode']}  "
                                f"nodes {event['nodes']}  leaf {escape(event['leaf'] or '-')}  "
                                f"at {_iso(event['at_ms'])}"
                            )
                        sys.stdout.flush()
                        seen += 1
                        if count is not None and seen >= count:
                            return
        except KeyboardInterrupt:
            return


def register(app: typer.Typer) -> None:
    """Add the admin commands to the `sessionfence` app."""
    app.command("sessions")(sessions)
    app.command("show")(show)
    app.command("queue")(queue)
    app.command("vacuum")(vacuum)
    app.command("gc")(gc)
    app.command("export")(export)
    app.command("import")(import_)
    app.command("watch")(watch)
