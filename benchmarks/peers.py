"""Peers that cannot live in the project's venv, installed on demand under ``bench-results/.peers/``.

* arq 0.28.0 pins ``redis<6``: installing it into the project venv would downgrade redis-py (8.x -> 5.3.1) under
  sessionfence itself, so it gets its own venv (``.peers/arq``), created with this interpreter's ``venv`` module
  and ``pip install arq==0.28.0``. Its harness is ``peer_arq.py``, run by that venv's python.
* BullMQ 6.7.0 (with ioredis 6.0.0, the versions of peer-baselines.md) is installed by ``npm install`` into
  ``.peers/node``; its harness is ``peer_bullmq.cjs``, run by ``node``.
* RQ 3.0.0 and the LangGraph Postgres checkpointer are in the ``bench`` extra (they coexist with redis-py 8).

Each ``ensure_*`` returns the thing to run, or raises `PeerUnavailable` with the exact reason (a skip).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ARQ_VERSION", "BULLMQ_VERSION", "IOREDIS_VERSION", "PeerUnavailable", "ensure_arq", "ensure_bullmq"]

ARQ_VERSION = "0.28.0"
BULLMQ_VERSION = "6.7.0"
IOREDIS_VERSION = "6.0.0"
INSTALL_TIMEOUT_S = 600


class PeerUnavailable(Exception):
    """The peer cannot run here; the message says why (reported as a skip)."""


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"`{' '.join(cmd)}` failed: {exc}") from exc


def ensure_arq(peers_dir: Path) -> Path:
    """The python of a venv holding arq ``ARQ_VERSION`` (created on first use)."""
    venv = peers_dir / "arq"
    python = venv / "bin" / "python"
    if python.exists():
        check = _run([str(python), "-c", "import arq, redis; print(arq.VERSION, redis.__version__)"])
        if check.returncode == 0 and check.stdout.split()[:1] == [ARQ_VERSION]:
            return python
    peers_dir.mkdir(parents=True, exist_ok=True)
    made = _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    if made.returncode != 0:
        raise PeerUnavailable(f"creating the arq venv failed: {_tail(made.stderr)}")
    pip = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                f"arq=={ARQ_VERSION}"])
    if pip.returncode != 0:
        raise PeerUnavailable(f"pip install arq=={ARQ_VERSION} failed: {_tail(pip.stderr)}")
    return python


def ensure_bullmq(peers_dir: Path) -> tuple[str, Path]:
    """``(node binary, node_modules/bullmq dir)``, installing bullmq + ioredis with npm on first use."""
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node is not on PATH (BullMQ is a Node.js library)")
    version = _run([node, "--version"]).stdout.strip()
    major = int(version.lstrip("v").split(".")[0] or 0) if version.startswith("v") else 0
    if major < 18:
        raise PeerUnavailable(f"node {version} is too old for bullmq {BULLMQ_VERSION}")
    root = peers_dir / "node"
    module = root / "node_modules" / "bullmq"
    manifest = module / "package.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("version") == BULLMQ_VERSION:
        return node, module
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm is not on PATH, so bullmq cannot be installed")
    root.mkdir(parents=True, exist_ok=True)
    package = root / "package.json"
    if not package.exists():
        package.write_text('{"name": "sessionfence-bench-peers", "private": true}\n')
    done = _run([npm, "install", "--no-audit", "--no-fund", "--save-exact",
                 f"bullmq@{BULLMQ_VERSION}", f"ioredis@{IOREDIS_VERSION}"], cwd=root)
    if done.returncode != 0 or not manifest.exists():
        raise PeerUnavailable(f"npm install bullmq@{BULLMQ_VERSION} failed: {_tail(done.stderr or done.stdout)}")
    return node, module


def node_package_version(module_dir: Path, name: str) -> str | None:
    manifest = module_dir.parent / name / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, KeyError, ValueError):
        return None
