"""The sync twin is generated from the async store; a stale copy would silently diverge."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sync_twin_is_generated_from_async_store() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "unasync.py"), "--check"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
