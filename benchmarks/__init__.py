"""sessionfence benchmarks: ``.venv/bin/python -m benchmarks`` runs every case against its peers (docs/benchmarks.md);
``.venv/bin/python -m benchmarks.commit_floor`` runs case 1 alone, with its client profile. From the repository root.

Each benchmark measures sessionfence against a raw-Redis floor in ONE run (same server, same client library,
same time window) and reports ratios, because absolute numbers on a shared VM drift by 20-30 % between runs.
Shared machinery (server, timing loops, server-side counters, tables, results JSON) lives in ``common.py``.
"""
