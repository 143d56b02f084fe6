"""The `sessionfence` command line (typer + rich)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .connect import redis_target
from .demo import run_demo

app = typer.Typer(
    help="sessionfence: fenced leases, atomic turn commits and durable queued work for agent sessions on Redis.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        help="Redis to use. Without it (and without REDIS_URL) a private embedded redis-server is started "
        "and removed on exit.",
    ),
]


@app.callback()
def _root() -> None:
    """sessionfence: fenced leases, atomic turn commits and durable queued work for agent sessions on Redis."""


@app.command()
def demo(redis_url: RedisUrl = None, turns: Annotated[int, typer.Option(help="How many turns to commit.")] = 3) -> None:
    """Claim an execution lease, commit a few turns atomically, and print the session."""
    with redis_target(redis_url, console) as url:
        raise typer.Exit(run_demo(url, console, turns))


def _register_fleet() -> None:
    from .fleet import fleet

    app.command(name="fleet")(fleet)


_register_fleet()


def _register_doctor_and_admin() -> None:
    from . import admin, doctor

    doctor.register(app)
    admin.register(app)


_register_doctor_and_admin()


def main() -> None:
    app()
