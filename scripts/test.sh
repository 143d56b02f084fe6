#!/usr/bin/env bash
# The project's test command (the same one README.md documents); .ci/run executes this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/ruff check src tests && .venv/bin/mypy --strict src && .venv/bin/python -m pytest -q
