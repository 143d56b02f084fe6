"""Where the CLI's Redis comes from: `--redis-url`, else REDIS_URL, else a private embedded server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console

from ..embedded import EmbeddedRedis


@contextlib.contextmanager
def redis_target(url: str | None, console: Console) -> Iterator[str]:
    """Yield a Redis URL; an embedded server started here is stopped (by pid) and removed on exit."""
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        console.print(
            f"[dim]no --redis-url or REDIS_URL: started a private redis-server ({server.binary}) "
            f"on {server.url}, pid {server.pid}; it is removed on exit[/dim]"
        )
        yield server.url
