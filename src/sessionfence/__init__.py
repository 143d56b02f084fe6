"""sessionfence: fenced execution leases, atomic turn commits and durable queued work for AI-agent sessions
on one shared Redis. See README.md and docs/ for the guarantees; contract.md is the behavioural source of truth.
"""

from .errors import (
    SCHEMA_VERSION,
    BackendError,
    BackendUnavailable,
    HeadRevisionConflict,
    InvalidRequest,
    QueuedWorkClaimExpired,
    RuntimeTurnCommitConflict,
    SessionBindingMismatch,
    SessionExecutionLeaseExpired,
    StoreError,
    UnsupportedReadScope,
    UnsupportedRecordSchemaVersion,
    ensure_supported_schema_version,
)
from .models import *  # noqa: F403 - the models are the public surface (api.md)
from .models import __all__ as _models_all
from .store import AsyncRedisStore, AsyncRedisStoreFactory
from .sync import RedisStore, RedisStoreFactory

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AsyncRedisStore",
    "AsyncRedisStoreFactory",
    "BackendError",
    "BackendUnavailable",
    "HeadRevisionConflict",
    "InvalidRequest",
    "QueuedWorkClaimExpired",
    "RedisStore",
    "RedisStoreFactory",
    "RuntimeTurnCommitConflict",
    "SessionBindingMismatch",
    "SessionExecutionLeaseExpired",
    "StoreError",
    "UnsupportedReadScope",
    "UnsupportedRecordSchemaVersion",
    "__version__",
    "ensure_supported_schema_version",
    *_models_all,
]
