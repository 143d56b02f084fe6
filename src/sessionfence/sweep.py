"""Find keys under a prefix that no namespace owns any more, and optionally delete them.

A maintenance tool, not part of the contract. `sweep` (blocking client) and `asweep` (asyncio client) walk
``<prefix>:*`` with SCAN (never KEYS) a page at a time, on every primary of a cluster, and report:

* ``orphaned_namespace``: a key of a namespace that holds neither a head, a meta record, queue sessions,
  lease rows, fencing marks nor attachment rows (for example blobs or graph nodes left by a crashed tool);
* ``unknown_part``: a key whose part name `sessionfence.keys` does not know (a typo, or a foreign writer);
* ``unlisted_queue_session``: a per-session queue key (``q_all:<sid>`` ...) of a session missing from the
  namespace's ``q_sessions`` set, which `delete_session` would therefore never remove;
* ``malformed_key``: a key under the prefix that is not ``<prefix>:{<tag>}:<part>`` at all.

Nothing is deleted unless ``delete=True``. Deletion re-checks each key inside a script (the namespace's keys
share one slot), so a namespace or queue session created after the scan never loses a key. Namespaces whose
schema marker is another version are reported in ``foreign_namespaces`` and never judged or touched: a newer
writer may use parts this version does not know.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .keys import INDEX_TAG, NamespaceKeys, index_key, ready_index_key, ready_version_key
from .scripts import AsyncClient, SyncClient, run_async, run_sync

__all__ = ["OrphanKey", "OrphanReason", "SweepReport", "asweep", "sweep"]

OrphanReason = Literal["orphaned_namespace", "unknown_part", "unlisted_queue_session", "malformed_key"]

_SCHEMA = "1"
_PER_SESSION = ("q_all", "q_ready", "q_delayed", "q_held")


@dataclass(frozen=True, slots=True)
class OrphanKey:
    key: str
    reason: OrphanReason
    namespace: str | None = None  # decoded namespace; None for a malformed key
    part: str | None = None


@dataclass(slots=True)
class SweepReport:
    prefix: str
    scanned_keys: int = 0
    namespaces: int = 0
    orphans: list[OrphanKey] = field(default_factory=list)
    foreign_namespaces: list[str] = field(default_factory=list)
    deleted: int = 0

    @property
    def orphan_keys(self) -> list[str]:
        return [o.key for o in self.orphans]


# ---- the key layout, derived from keys.py so the two never drift apart -----------------------------------


def _layout() -> tuple[frozenset[str], dict[str, str], frozenset[str]]:
    probe = NamespaceKeys("p", "n")
    base = probe.base
    fixed = frozenset(k[len(base) :] for k in probe.fixed())
    per_session = {}
    for name in _PER_SESSION:
        part = str(getattr(probe, name)("S"))[len(base) :]
        per_session[part[:-1]] = name
    index_base = f"p:{{{INDEX_TAG}}}:"
    index_parts = frozenset(
        f("p")[len(index_base) :] for f in (index_key, ready_index_key, ready_version_key)
    )
    return fixed, per_session, index_parts


FIXED_PARTS, PER_SESSION_PREFIXES, INDEX_PARTS = _layout()

_TAG_ESCAPES = {"%25": "%", "%7B": "{", "%7D": "}"}


def decode_tag(tag: str) -> str:
    """Inverse of `keys.encode_tag`."""
    return re.sub("%(?:25|7B|7D)", lambda m: _TAG_ESCAPES[m.group(0)], tag)


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def parse_key(prefix: str, key: str) -> tuple[str, str] | None:
    """``<prefix>:{<tag>}:<part>`` -> (tag, part), else None."""
    head = prefix + ":{"
    if not key.startswith(head):
        return None
    end = key.find("}", len(head))
    if end < 0 or key[end + 1 : end + 2] != ":":
        return None
    return key[len(head) : end], key[end + 2 :]


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _raw(key: str) -> bytes:
    """Back to the exact key bytes (keys that are not UTF-8 survive the round trip)."""
    return key.encode("utf-8", "surrogateescape")


# ---- classification (pure) ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Status:
    alive: bool
    marker: str
    sessions: frozenset[str] | None  # None: q_sessions is not a set, so per-session keys are not judged


def _status_call(prefix: str, tag: str) -> tuple[list[str], list[str]]:
    k = NamespaceKeys(prefix, decode_tag(tag))
    return [k.schema, k.head, k.meta, k.q_sessions, k.leases, k.fencing, k.att], []


def _queue_session(part: str) -> str | None:
    """The session id of a per-session queue key's part (``q_all:<encoded sid>``), else None."""
    for prefix in PER_SESSION_PREFIXES:
        if part.startswith(prefix):
            return decode_tag(part[len(prefix) :])
    return None


def _status_from_reply(reply: Any) -> _Status:
    alive, marker, sessions = reply
    members = None if not isinstance(sessions, list) else frozenset(_text(s) for s in sessions)
    return _Status(bool(int(alive)), _text(marker) if marker else "", members)


def _group(prefix: str, keys: Iterable[str], report: SweepReport) -> dict[str, list[tuple[str, str]]]:
    """Group one page by namespace tag; malformed keys and the factory index are settled here."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        report.scanned_keys += 1
        parsed = parse_key(prefix, key)
        if parsed is None:
            report.orphans.append(OrphanKey(key, "malformed_key"))
            continue
        tag, part = parsed
        if tag == INDEX_TAG:
            if part not in INDEX_PARTS:
                report.orphans.append(OrphanKey(key, "unknown_part", INDEX_TAG, part))
            continue
        groups.setdefault(tag, []).append((key, part))
    return groups


def _classify(
    tag: str, members: list[tuple[str, str]], status: _Status, report: SweepReport
) -> list[OrphanKey]:
    namespace = decode_tag(tag)
    if status.marker not in ("", _SCHEMA):
        if namespace not in report.foreign_namespaces:
            report.foreign_namespaces.append(namespace)
        return []
    found: list[OrphanKey] = []
    for key, part in members:
        if not status.alive:
            found.append(OrphanKey(key, "orphaned_namespace", namespace, part))
            continue
        if part in FIXED_PARTS:
            continue
        sid = _queue_session(part)
        if sid is not None:
            if status.sessions is not None and sid not in status.sessions:
                found.append(OrphanKey(key, "unlisted_queue_session", namespace, part))
            continue
        found.append(OrphanKey(key, "unknown_part", namespace, part))
    return found


def _delete_call(prefix: str, orphan: OrphanKey) -> tuple[list[Any], list[str]] | None:
    """The guarded delete of one orphan; None for a malformed key (deleted with a plain DEL)."""
    if orphan.namespace is None or (orphan.namespace == INDEX_TAG and orphan.reason == "unknown_part"):
        return None
    k = NamespaceKeys(prefix, orphan.namespace)
    keys: list[Any] = [k.schema, k.head, k.meta, k.q_sessions, k.leases, k.fencing, k.att, _raw(orphan.key)]
    if orphan.reason == "orphaned_namespace":
        return keys, ["namespace", ""]
    if orphan.reason == "unlisted_queue_session":
        return keys, ["session", _queue_session(orphan.part or "") or ""]
    return keys, ["part", ""]


def _pages(keys: Iterable[Any], page: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(_text(key))
        if len(batch) >= page:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_page(page: int) -> None:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"page must be a positive integer, got {page!r}")


# ---- sync ------------------------------------------------------------------------------------------------


def sweep(client: SyncClient, prefix: str, *, delete: bool = False, page: int = 1000) -> SweepReport:
    """Report (and with ``delete=True`` remove) orphaned keys under ``prefix`` (blocking client)."""
    _check_page(page)
    report = SweepReport(prefix)
    seen: set[str] = set()
    keys = client.scan_iter(match=_glob_escape(prefix) + ":*", count=page)
    for batch in _pages(keys, page):
        for tag, members in _group(prefix, batch, report).items():
            seen.add(tag)
            status_keys, args = _status_call(prefix, tag)
            status = _status_from_reply(run_sync(client, "sweep_status", status_keys, args))
            found = _classify(tag, members, status, report)
            report.orphans.extend(found)
    report.namespaces = len(seen)
    if delete:
        for orphan in report.orphans:
            call = _delete_call(prefix, orphan)
            if call is None:
                report.deleted += int(client.delete(_raw(orphan.key)))
            else:
                report.deleted += int(run_sync(client, "sweep_delete", call[0], call[1]))
    return report


# ---- async -----------------------------------------------------------------------------------------------


async def asweep(client: AsyncClient, prefix: str, *, delete: bool = False, page: int = 1000) -> SweepReport:
    """`sweep` for asyncio clients."""
    _check_page(page)
    report = SweepReport(prefix)
    seen: set[str] = set()
    batch: list[str] = []

    async def flush() -> None:
        for tag, members in _group(prefix, batch, report).items():
            seen.add(tag)
            status_keys, args = _status_call(prefix, tag)
            status = _status_from_reply(await run_async(client, "sweep_status", status_keys, args))
            report.orphans.extend(_classify(tag, members, status, report))
        batch.clear()

    async for key in client.scan_iter(match=_glob_escape(prefix) + ":*", count=page):
        batch.append(_text(key))
        if len(batch) >= page:
            await flush()
    await flush()
    report.namespaces = len(seen)
    if delete:
        for orphan in report.orphans:
            call = _delete_call(prefix, orphan)
            if call is None:
                report.deleted += int(await client.delete(_raw(orphan.key)))
            else:
                report.deleted += int(await run_async(client, "sweep_delete", call[0], call[1]))
    return report
