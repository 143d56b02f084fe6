"""sessionfence benchmarks: run as ``.venv/bin/python -m benchmarks.<name>`` from the repository root.

Each benchmark measures sessionfence against a raw-Redis floor in ONE run (same server, same client library,
same time window) and reports ratios, because absolute numbers on a shared VM drift by 20-30 % between runs.
Shared machinery (server, timing loops, server-side counters, tables, results JSON) lives in ``common.py``.
"""
