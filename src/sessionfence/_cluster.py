"""A throw-away 3-primary Redis Cluster on loopback, for the cluster tier of the test suite.

Each node is an `EmbeddedRedis` started with ``--cluster-enabled yes``; ``redis-cli --cluster create``
assigns the 16384 slots. The point is to prove that every script touches only keys of one hash slot (a
standalone server never complains about cross-slot access, a cluster does).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from types import TracebackType
from typing import Self

from sessionfence.embedded import LOOPBACK, EmbeddedRedis, find_redis_cli

__all__ = ["ClusterUnavailable", "LocalCluster"]

CLUSTER_BUS_OFFSET = 10000  # Redis < 7 has no `cluster-port`: the bus always listens on port + 10000


NODE_ARGS = (
    *("--cluster-enabled", "yes"),
    *("--cluster-config-file", "{dir}/nodes-{port}.conf"),
    *("--cluster-node-timeout", "5000"),
    # A test bed must keep answering even while a slot is briefly uncovered.
    *("--cluster-require-full-coverage", "no"),
)


class ClusterUnavailable(RuntimeError):
    """The local cluster could not be created; the message says why (missing binary, failed create, ...)."""


def _command(host: str, port: int, *parts: str, timeout: float = 2.0) -> bytes:
    """Send one inline command and return the raw reply (enough for CLUSTER INFO, no client needed)."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall((" ".join(parts) + "\r\n").encode())
        chunks: list[bytes] = []
        conn.settimeout(timeout)
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            data = b"".join(chunks)
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                return data
            if data.startswith(b"$"):
                header, _, rest = data.partition(b"\r\n")
                length = int(header[1:])
                if length < 0 or len(rest) >= length + 2:
                    return data
        return b"".join(chunks)


class LocalCluster:
    """Three cluster-enabled `EmbeddedRedis` primaries joined by ``redis-cli --cluster create``.

    Use as ``with LocalCluster() as c: RedisCluster.from_url(c.url)`` (or ``async with``). Raises
    `ClusterUnavailable` if a binary is missing or the cluster does not reach ``cluster_state:ok``.
    """

    def __init__(self, *, size: int = 3, ready_timeout: float = 60.0, binary: str | None = None) -> None:
        if size < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.size = size
        self.ready_timeout = ready_timeout
        self._binary = binary
        self.nodes: list[EmbeddedRedis] = []

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every primary, for ``ClusterNode(host, port)`` lists."""
        return [(LOOPBACK, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """URL of the first node; redis-py's RedisCluster discovers the others from it."""
        if not self.nodes:
            raise RuntimeError("LocalCluster has not been started")
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        try:
            cli = find_redis_cli()
        except RuntimeError as exc:
            raise ClusterUnavailable(str(exc)) from exc
        for _ in range(self.size):
            try:
                node = EmbeddedRedis(
                    binary=self._binary,
                    extra_args=NODE_ARGS,
                    companion_port_offsets=[CLUSTER_BUS_OFFSET],
                )
                self.nodes.append(node)
                node.start()
            except RuntimeError as exc:
                raise ClusterUnavailable(f"could not start a cluster node: {exc}") from exc
        create = [cli, "--cluster", "create", *(f"{h}:{p}" for h, p in self.startup_nodes)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            result = subprocess.run(
                create,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.ready_timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterUnavailable(f"`{' '.join(create)}` failed: {exc}") from exc
        output = (result.stdout + result.stderr).decode(errors="replace")
        if result.returncode != 0 or "[ERR]" in output:
            raise ClusterUnavailable(
                f"`{' '.join(create)}` exited with {result.returncode}:\n{output[-4000:]}"
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Every node must report ``cluster_state:ok`` and know all primaries before clients connect."""
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            pending = []
            for node in self.nodes:
                try:
                    info = _command(LOOPBACK, node.port, "CLUSTER", "INFO").decode(errors="replace")
                except OSError as exc:
                    info = f"unreachable: {exc}"
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{self.size}" not in info:
                    pending.append(f"{node.port}: {info.strip()[:300]}")
            if not pending:
                return
            last = "\n".join(pending)
            time.sleep(0.1)
        raise ClusterUnavailable(
            f"cluster did not reach cluster_state:ok in {self.ready_timeout:.0f}s:\n{last}"
        )

    def close(self) -> None:
        """Stop every node by pid and remove their directories."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            with contextlib.suppress(Exception):
                node.close()

    async def astart(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
