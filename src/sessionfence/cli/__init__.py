"""The `sessionfence` command. See `sessionfence --help`."""

from .app import app, main

__all__ = ["app", "main"]
