"""`sessionfence doctor`: is this Redis fit to hold sessions? One verdict per check, with the fix.

Checks: server version (>= 6.2), deployment mode and role (standalone / cluster / sentinel, primary or
replica), maxmemory-policy (anything that evicts keys can silently delete sessions), memory headroom,
persistence (what a crash or restart loses), ACL permissions for the key prefix, script support (SCRIPT LOAD +
EVALSHA of a probe that reads TIME and writes a key under the prefix, and one of sessionfence's own scripts),
round-trip latency, and how many sessions the prefix indexes. Every check degrades gracefully when the server
refuses a diagnostic command (managed Redis often disables CONFIG; restricted ACL users may not run INFO or
ACL): the verdict then says what could not be verified. Exit code 1 when any check is an ERROR.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, cast

import orjson
import redis
import redis.cluster
import typer
from rich.console import Console
from rich.markup import escape

from ..keys import NamespaceKeys, index_key, ready_version_key
from ..scripts import SyncClient, run_sync
from .admin import KeyPrefix, RedisUrl, open_client
from .connect import redis_target

__all__ = ["Check", "Status", "register", "run_checks"]

MIN_VERSION = (6, 2)


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail, "fix": self.fix}


# ------------------------------------------------------------------------------------------------------------
# Small helpers that turn "not permitted" into None


def _try(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """(result, None) or (None, the server's refusal) for diagnostics a server may refuse."""
    try:
        return call(), None
    except redis.ResponseError as exc:  # NOPERM, unknown command, CONFIG disabled on managed services, ...
        return None, str(exc)


def _info(conn: redis.Redis, section: str) -> dict[str, Any] | None:
    info, _ = _try(lambda: conn.info(section))
    return info if isinstance(info, dict) else None


def _config(conn: redis.Redis, name: str) -> str | None:
    value, _ = _try(lambda: conn.config_get(name))
    if not isinstance(value, dict) or name not in value:
        return None
    v = value[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _nodes(client: SyncClient) -> list[tuple[str, redis.Redis]]:
    """The data nodes whose configuration matters: the server itself, or every primary of a cluster."""
    if isinstance(client, redis.cluster.RedisCluster):
        primaries: Any = cast(Any, client).get_primaries()
        return [(str(node.name), node.redis_connection) for node in primaries if node.redis_connection is not None]
    return [("", client)]


def _label(name: str, node: str, many: bool) -> str:
    return f"{name} [{node}]" if many else name


# ------------------------------------------------------------------------------------------------------------
# Checks on one node


def check_version(conn: redis.Redis) -> tuple[Check, tuple[int, ...] | None]:
    server = _info(conn, "server") or {}
    version = server.get("redis_version")
    if version is None:
        hello, _ = _try(lambda: cast(Any, conn).execute_command("HELLO"))
        if isinstance(hello, dict):
            version = hello.get(b"version") or hello.get("version")
        elif isinstance(hello, list | tuple):
            pairs = dict(zip(hello[::2], hello[1::2], strict=False))
            version = pairs.get(b"version") or pairs.get("version")
    if version is None:
        return Check("version", Status.WARN, "could not read the server version (INFO and HELLO refused)",
                     f"make sure the server runs Redis >= {MIN_VERSION[0]}.{MIN_VERSION[1]}"), None
    text = _text(version)
    parsed = _version_tuple(text)
    if parsed[:2] >= MIN_VERSION:
        return Check("version", Status.OK, f"Redis {text}"), parsed
    return Check(
        "version", Status.ERROR, f"Redis {text} is older than {MIN_VERSION[0]}.{MIN_VERSION[1]}",
        f"upgrade to Redis >= {MIN_VERSION[0]}.{MIN_VERSION[1]} (sessionfence's scripts rely on it)",
    ), parsed


def check_mode(conn: redis.Redis, primaries: int) -> Check:
    server = _info(conn, "server")
    if server is None:
        return Check("mode", Status.WARN, "could not read INFO server: deployment mode unknown")
    mode = str(server.get("redis_mode", "standalone"))
    if mode == "sentinel":
        return Check(
            "mode", Status.ERROR, "this is a Sentinel process, not a data node",
            "point --redis-url at the primary that Sentinel reports (SENTINEL get-master-addr-by-name), "
            "or use a Sentinel-aware client",
        )
    replication = _info(conn, "replication") or {}
    role = str(replication.get("role", "master"))
    if role in ("slave", "replica"):
        return Check(
            "mode", Status.ERROR, f"{mode}, connected to a read-only replica",
            "connect to the primary: replicas refuse writes and may lag behind acknowledged commits",
        )
    replicas = int(replication.get("connected_slaves", 0) or 0)
    cluster = _info(conn, "cluster") or {}
    if mode == "cluster" or int(cluster.get("cluster_enabled", 0) or 0) == 1:
        noun = "primary" if primaries == 1 else "primaries"
        detail = f"cluster with {primaries} {noun}: each session's keys share one hash slot"
    else:
        detail = "standalone primary"
    if replicas:
        detail += (
            f", {replicas} replica(s): a failover may lose writes the old primary acknowledged but had not "
            "replicated (use WAIT for stronger durability)"
        )
    return Check("mode", Status.OK, detail)


def check_eviction(conn: redis.Redis) -> Check:
    memory = _info(conn, "memory") or {}
    policy = memory.get("maxmemory_policy")
    if policy is None:
        policy = _config(conn, "maxmemory-policy")
    fix = "CONFIG SET maxmemory-policy noeviction (and set it in redis.conf / your provider's parameter group)"
    if policy is None:
        return Check("maxmemory-policy", Status.WARN, "could not read the eviction policy (INFO and CONFIG refused)",
                     "make sure maxmemory-policy is noeviction")
    policy = _text(policy)
    if policy == "noeviction":
        return Check("maxmemory-policy", Status.OK, "noeviction: a full server refuses writes instead of dropping keys")
    if policy.startswith("allkeys-"):
        return Check(
            "maxmemory-policy", Status.ERROR,
            f"{policy} evicts any key under memory pressure: eviction silently deletes session heads, leases, "
            "fencing marks and queued work", fix,
        )
    if policy.startswith("volatile-"):
        return Check(
            "maxmemory-policy", Status.WARN,
            f"{policy} evicts only keys with a TTL; sessionfence sets none, so its keys survive, but other "
            "keys on this server are dropped and a full server still refuses writes", fix,
        )
    return Check("maxmemory-policy", Status.WARN, f"unknown eviction policy {policy!r}", fix)


def check_memory(conn: redis.Redis) -> Check:
    memory = _info(conn, "memory")
    if memory is None:
        return Check("memory", Status.WARN, "could not read INFO memory")
    used = int(memory.get("used_memory", 0) or 0)
    limit = int(memory.get("maxmemory", 0) or 0)
    if limit <= 0:
        return Check("memory", Status.OK, f"{used / 2**20:.1f} MiB used, no maxmemory limit")
    share = used / limit
    detail = f"{used / 2**20:.1f} MiB of {limit / 2**20:.1f} MiB maxmemory ({share:.0%})"
    if share >= 0.9:
        return Check("memory", Status.WARN, detail + ": close to the limit, writes will soon fail with OOM",
                     "raise maxmemory or free memory")
    return Check("memory", Status.OK, detail)


def check_persistence(conn: redis.Redis, durable: bool) -> Check:
    persistence = _info(conn, "persistence")
    aof_on: bool | None = None
    if persistence is not None:
        aof_on = int(persistence.get("aof_enabled", 0) or 0) == 1
    else:
        appendonly = _config(conn, "appendonly")
        aof_on = None if appendonly is None else appendonly == "yes"
    fsync = _config(conn, "appendfsync")
    save = _config(conn, "save")
    severe = Status.ERROR if durable else Status.WARN
    aof_fix = "CONFIG SET appendonly yes; CONFIG SET appendfsync everysec (or always); persist both in redis.conf"
    if persistence is not None and persistence.get("aof_last_write_status", "ok") != "ok":
        return Check("persistence", Status.ERROR, "the last AOF write failed: the server may be refusing writes",
                     "check the server log and disk space")
    if aof_on is None:
        return Check("persistence", Status.WARN, "could not read the persistence settings (INFO and CONFIG refused)",
                     "make sure AOF is on (appendonly yes, appendfsync everysec or always)")
    if aof_on:
        if fsync == "always":
            return Check("persistence", Status.OK, "AOF with appendfsync always: loses nothing acknowledged")
        if fsync == "everysec":
            return Check(
                "persistence", Status.OK,
                "AOF with appendfsync everysec: a power loss may lose up to ~1 s of acknowledged commits",
            )
        if fsync == "no":
            return Check(
                "persistence", Status.WARN,
                "AOF with appendfsync no: the OS decides when to flush (typically ~30 s of commits lost on power "
                "loss)", "CONFIG SET appendfsync everysec (or always)",
            )
        return Check("persistence", Status.WARN, "AOF is on, appendfsync unknown (CONFIG GET refused)",
                     "make sure appendfsync is everysec or always")
    if save is None:
        return Check("persistence", severe, "AOF is off and the RDB schedule is unknown (CONFIG GET refused)", aof_fix)
    if save.strip():
        return Check(
            "persistence", severe,
            f"RDB snapshots only (save {save!r}): a crash or restart loses every commit since the last snapshot",
            aof_fix,
        )
    return Check(
        "persistence", severe,
        "no persistence (appendonly no, save ''): a restart loses every session"
        + ("" if durable else " (an ERROR for a DURABLE deployment: pass --durable)"),
        aof_fix,
    )


_PROBE_SOURCE = (
    "local t = redis.call('TIME')\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "redis.call('DEL', KEYS[1])\n"
    "if v ~= ARGV[1] then return redis.error_reply('probe read back ' .. tostring(v)) end\n"
    "return t\n"
)


def _probe_key(prefix: str) -> str:
    return NamespaceKeys(prefix, "__doctor__").part("probe")


def check_scripts(client: SyncClient, prefix: str) -> Check:
    """SCRIPT LOAD + EVALSHA of a probe that reads TIME and writes a key under the prefix; one real script."""
    key = _probe_key(prefix)
    token = uuid.uuid4().hex
    sha = hashlib.sha1(_PROBE_SOURCE.encode()).hexdigest()
    fix = "allow scripting (EVAL, EVALSHA, SCRIPT) and TIME for this user, on a writable primary with free memory"
    try:
        loaded = _text(client.script_load(_PROBE_SOURCE))
        if isinstance(client, redis.Redis) and loaded != sha:
            return Check("scripts", Status.ERROR, f"SCRIPT LOAD returned {loaded}, expected {sha}", fix)
        reply: Any = client.evalsha(sha, 1, key, token)
        server_ms = int(reply[0]) * 1000 + int(reply[1]) // 1000
    except redis.RedisError as exc:
        return Check("scripts", Status.ERROR, f"the probe script failed on {key}: {exc}", fix)
    skew_ms = abs(server_ms - time.time() * 1000)
    try:
        keys = NamespaceKeys(prefix, "__doctor__")
        run_sync(client, "load_head", [keys.schema, keys.head], [])
    except Exception as exc:
        return Check("scripts", Status.ERROR, f"sessionfence's load_head script failed: {exc}", fix)
    detail = (
        f"SCRIPT LOAD + EVALSHA work (TIME and a write under {prefix!r}); sessionfence's scripts run; "
        f"server clock {skew_ms / 1000:.1f} s from this host's"
    )
    if skew_ms > 5000:
        return Check(
            "scripts", Status.WARN, detail + " (leases use the server clock; worker ready-hints use the host's)",
            "synchronise clocks (NTP)",
        )
    return Check("scripts", Status.OK, detail)


def _acl_probes(prefix: str) -> list[list[str]]:
    key = _probe_key(prefix)
    index = index_key(prefix)
    sha = "0" * 40
    return [
        ["EVALSHA", sha, "1", key],
        ["EVAL", "return 1", "1", key],
        ["SCRIPT", "LOAD", "return 1"],
        ["TIME"],
        ["GET", key], ["SET", key, "x"], ["EXISTS", key], ["TYPE", key], ["UNLINK", key], ["INCR", key],
        ["HGET", key, "f"], ["HSET", key, "f", "v"], ["HGETALL", key], ["HINCRBY", key, "f", "1"], ["HDEL", key, "f"],
        ["XADD", key, "*", "f", "v"], ["XRANGE", key, "-", "+"], ["XDEL", key, "0-1"],
        ["XREAD", "COUNT", "1", "STREAMS", key, "0"],
        ["ZADD", key, "1", "m"], ["ZRANGE", key, "0", "-1"], ["ZREM", key, "m"], ["ZSCORE", key, "m"],
        ["SADD", key, "m"], ["SMEMBERS", key], ["SREM", key, "m"],
        ["RPUSH", key, "x"], ["LRANGE", key, "0", "-1"],
        ["ZADD", index, "0", "s"], ["ZRANGE", index, "0", "-1"], ["ZREM", index, "s"],
        ["HINCRBY", ready_version_key(prefix), "s", "1"],
    ]  # fmt: skip


def _dryrun(conn: redis.Redis, user: str, probe: list[str]) -> tuple[Any, str | None]:
    return _try(lambda: cast(Any, conn).execute_command("ACL", "DRYRUN", user, *probe))


def check_acl(conn: redis.Redis, prefix: str, scripts_ok: bool) -> Check:
    fix = f"ACL SETUSER <user> ~{prefix}:* +@read +@write +@scripting +time (or review the user's rules)"
    user, refusal = _try(lambda: cast(Any, conn).execute_command("ACL", "WHOAMI"))
    partial = "the script probe succeeded" if scripts_ok else "see the scripts check"
    if user is None:
        return Check("acl", Status.WARN if scripts_ok else Status.ERROR,
                     f"ACL WHOAMI refused ({refusal}): permissions not inspected; {partial}", fix)
    name = _text(user)
    denied: list[str] = []
    dryrun_refusal: str | None = None
    for probe in _acl_probes(prefix):
        verdict, dryrun_refusal = _dryrun(conn, name, probe)
        if verdict is None:
            break
        if _text(verdict) != "OK":
            denied.append(f"{' '.join(probe[:2])}: {_text(verdict)}")
    else:
        if denied:
            return Check("acl", Status.ERROR, f"user {name!r} may not run: " + "; ".join(denied[:5])
                         + (f" (and {len(denied) - 5} more)" if len(denied) > 5 else ""), fix)
        return Check("acl", Status.OK, f"user {name!r} may run every command sessionfence uses on {prefix}:* keys "
                     "(ACL DRYRUN)")
    # No DRYRUN (Redis < 7) or not permitted: read the user's rules instead.
    rules, getuser_refusal = _try(lambda: cast(Any, conn).execute_command("ACL", "GETUSER", name))
    if not isinstance(rules, dict | list):
        return Check(
            "acl", Status.WARN if scripts_ok else Status.ERROR,
            f"user {name!r}: ACL DRYRUN and GETUSER refused ({dryrun_refusal}; {getuser_refusal}): permissions only "
            f"partly verified; {partial}", fix,
        )
    if isinstance(rules, list):
        rules = dict(zip(rules[::2], rules[1::2], strict=False))
    r = {_text(k): v for k, v in rules.items()}
    flags = [_text(f) for f in (r.get("flags") or [])]
    keys = _text(r.get("keys") or "")
    commands = _text(r.get("commands") or "")
    all_keys = "allkeys" in flags or "~*" in keys.split() or "%RW~*" in keys.split()
    all_commands = "allcommands" in flags or (commands.startswith("+@all") and " -" not in commands)
    if all_keys and all_commands:
        return Check("acl", Status.OK, f"user {name!r} has all keys and all commands (ACL GETUSER)")
    return Check(
        "acl", Status.WARN if scripts_ok else Status.ERROR,
        f"user {name!r} is restricted (keys {keys or '-'}; commands {commands or '-'}): not every command could be "
        f"verified without ACL DRYRUN (Redis >= 7); {partial}", fix,
    )


def check_latency(conn: redis.Redis, pings: int, warn_ms: float) -> Check:
    samples = []
    for _ in range(pings):
        t = time.perf_counter()
        conn.ping()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    median = statistics.median(samples)
    p99 = samples[max(0, math.ceil(0.99 * len(samples)) - 1)]
    detail = f"{pings} PINGs: median {median:.2f} ms, p99 {p99:.2f} ms (each store operation is one round trip)"
    if median > warn_ms or p99 > 5 * warn_ms:
        return Check("latency", Status.WARN, detail + f" above the {warn_ms:g} ms warning threshold",
                     "run workers close to Redis (same zone), check network and server load")
    return Check("latency", Status.OK, detail)


def check_index(client: SyncClient, prefix: str) -> Check:
    count, refusal = _try(lambda: client.zcard(index_key(prefix)))
    if count is None:
        return Check("sessions", Status.WARN, f"could not read the session index: {refusal}")
    return Check("sessions", Status.OK, f"{int(count)} session(s) in the index of key prefix {prefix!r}")


def run_checks(
    client: SyncClient, *, key_prefix: str = "sf", durable: bool = False, pings: int = 50, latency_warn_ms: float = 5.0
) -> list[Check]:
    """Every check against one deployment (all primaries of a cluster), in display order."""
    nodes = _nodes(client)
    many = len(nodes) > 1
    checks: list[Check] = []
    for node, conn in nodes:
        version_check, _ = check_version(conn)
        for check in (
            version_check,
            check_mode(conn, len(nodes)),
            check_eviction(conn),
            check_memory(conn),
            check_persistence(conn, durable),
        ):
            check.name = _label(check.name, node, many)
            checks.append(check)
    scripts = check_scripts(client, key_prefix)
    for node, conn in nodes:
        acl = check_acl(conn, key_prefix, scripts.status is not Status.ERROR)
        acl.name = _label(acl.name, node, many)
        checks.append(acl)
    checks.append(scripts)
    for node, conn in nodes:
        latency = check_latency(conn, pings, latency_warn_ms)
        latency.name = _label(latency.name, node, many)
        checks.append(latency)
    checks.append(check_index(client, key_prefix))
    return checks


_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.ERROR: "bold red"}


def doctor(
    redis_url: RedisUrl = None,
    key_prefix: KeyPrefix = "sf",
    durable: Annotated[
        bool,
        typer.Option(
            "--durable",
            help="This deployment relies on DurabilityTier.DURABLE: a Redis that loses acknowledged commits on "
            "restart (no AOF) is an ERROR instead of a WARN.",
        ),
    ] = False,
    latency_warn_ms: Annotated[
        float, typer.Option("--latency-warn-ms", min=0.0, help="Warn when the median PING exceeds this (or p99 5x it).")
    ] = 5.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")] = False,
) -> None:
    """Check that a Redis is fit for sessionfence: version, eviction, persistence, mode, ACLs, scripts, latency.

    Prints one verdict (OK / WARN / ERROR) per check with its fix; exits 1 if any check is an ERROR.
    """
    err = Console(stderr=True)
    with redis_target(redis_url, err) as url:
        try:
            client = open_client(url)
        except redis.RedisError as exc:
            checks = [Check("connection", Status.ERROR, f"cannot connect: {exc}", "check --redis-url / REDIS_URL")]
        else:
            try:
                checks = run_checks(client, key_prefix=key_prefix, durable=durable, latency_warn_ms=latency_warn_ms)
            except redis.RedisError as exc:
                checks = [Check("connection", Status.ERROR, f"lost the server mid-check: {exc}",
                                "check --redis-url / REDIS_URL")]
            finally:
                client.close()
    errors = sum(c.status is Status.ERROR for c in checks)
    warnings = sum(c.status is Status.WARN for c in checks)
    if json_output:
        doc = {
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "key_prefix": key_prefix,
            "checks": [c.to_wire() for c in checks],
        }
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        out = Console(highlight=False, soft_wrap=True)
        width = max(len(c.name) for c in checks)
        for c in checks:
            out.print(
                f"[{_STYLE[c.status]}]{c.status.value:<5}[/]  {escape(c.name):<{width}}  {escape(c.detail)}"
            )
            if c.fix and c.status is not Status.OK:
                out.print(f"{'':<5}  {'':<{width}}  [dim]fix: {escape(c.fix)}[/dim]")
        verdict = "[bold red]unfit[/]" if errors else "[green]fit[/]"
        out.print(f"doctor: {errors} error(s), {warnings} warning(s): {verdict} for sessionfence")
    if errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `doctor` to the `sessionfence` app."""
    app.command("doctor")(doctor)
