"""The asyncio store: one namespace handle over `redis.asyncio` (contract §2, api.md).

Every method builds a `Call` with the shared `Codec` (pure) and sends it with one EVALSHA; the sync twin in
`sync.py` does the same over a blocking client, so encode/decode logic exists exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from .codec import Call, Codec, texts
from .errors import BackendError, InvalidRequest
from .keys import NamespaceKeys, index_key
from .models import (
    ActivePath,
    AttachmentIntent,
    AttachmentManifestEntry,
    DurabilityTier,
    FullGraph,
    GcReport,
    PersistedSessionRead,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    RuntimeCommit,
    RuntimeCommitResult,
    SessionExecutionLease,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseFence,
    SessionHeadMeta,
    SessionMeta,
    SessionNodeRecord,
    SessionPickerInfo,
    SessionStoreCreateRequest,
    VacuumReport,
)
from .scripts import AsyncClient, async_client_from_url, run_async

__all__ = ["AsyncRedisStore", "AsyncRedisStoreFactory"]

T = TypeVar("T")


class AsyncRedisStore:
    """A handle on one namespace. Many handles, in many processes, may share a namespace."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        *,
        key_prefix: str = "sf",
        clock: Callable[[], int] | None = None,
        durability: DurabilityTier = DurabilityTier.DURABLE,
        bound_session_id: str | None = None,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self.namespace = namespace
        self.keys = NamespaceKeys(key_prefix, namespace)
        self._codec = Codec(self.keys, clock, bound_session_id)
        self._durability = durability

    @classmethod
    def from_url(cls, url: str, namespace: str, *, cluster: bool = False, **options: Any) -> AsyncRedisStore:
        """`cluster=True` connects through RedisCluster; the store's scripts run unchanged there."""
        return cls(async_client_from_url(url, cluster=cluster), namespace, owns_client=True, **options)

    @property
    def client(self) -> AsyncClient:
        return self._client

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, call: Call[T]) -> T:
        return call.decode(await run_async(self._client, call.script, call.keys, call.args))

    def durability_tier(self) -> DurabilityTier:
        return self._durability

    # -- reads ---------------------------------------------------------------------------------------------
    async def load_session(self, scope: FullGraph | ActivePath) -> PersistedSessionRead | None:
        return await self._run(self._codec.load_session(scope))

    async def load_session_head_meta(self) -> SessionHeadMeta | None:
        return await self._run(self._codec.load_head())

    async def load_node(self, node_id: str) -> SessionNodeRecord | None:
        return await self._run(self._codec.load_node(node_id))

    # -- commit and leases ---------------------------------------------------------------------------------
    async def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult:
        return await self._run(self._codec.commit(commit))

    async def try_claim_session_execution_lease(
        self, session_id: str, owner_id: str, lease_ttl_ms: int
    ) -> SessionExecutionLease | None:
        return await self._run(self._codec.try_claim(session_id, owner_id, lease_ttl_ms))

    async def renew_session_execution_lease(
        self, fence: SessionExecutionLeaseFence, lease_ttl_ms: int
    ) -> SessionExecutionLease:
        return await self._run(self._codec.renew(fence, lease_ttl_ms))

    async def release_session_execution_lease(self, completion: SessionExecutionLeaseCompletion) -> None:
        await self._run(self._codec.release(completion))

    # -- queued work ---------------------------------------------------------------------------------------
    async def enqueue_queued_work(self, batch: QueuedWorkBatchDraft) -> QueuedWorkBatch:
        return await self._run(self._codec.enqueue(batch))

    async def claim_ready_queued_work(
        self,
        session_id: str,
        session_execution_lease: SessionExecutionLeaseFence,
        owner_id: str,
        boundary: QueuedWorkClaimBoundary,
        lease_ttl_ms: int,
        max_batches: int,
    ) -> QueuedWorkClaim | None:
        call = self._codec.claim(
            session_id, session_execution_lease, owner_id, boundary, lease_ttl_ms, max_batches
        )
        return None if max_batches == 0 else await self._run(call)

    async def claim_ready_queued_work_by_batch_ids(
        self,
        session_id: str,
        session_execution_lease: SessionExecutionLeaseFence,
        owner_id: str,
        boundary: QueuedWorkClaimBoundary,
        lease_ttl_ms: int,
        batch_ids: Sequence[str],
    ) -> QueuedWorkClaim | None:
        if isinstance(batch_ids, (str, bytes)) or not isinstance(batch_ids, Sequence):
            raise InvalidRequest(f"batch_ids must be a list of str, got {type(batch_ids).__name__}")
        ids = list(batch_ids)
        call = self._codec.claim(
            session_id, session_execution_lease, owner_id, boundary, lease_ttl_ms, len(ids), exact=ids
        )
        return None if not ids else await self._run(call)

    async def renew_queued_work_claim(self, claim: QueuedWorkClaim, lease_ttl_ms: int) -> QueuedWorkClaim:
        return await self._run(self._codec.renew_claim(claim, lease_ttl_ms))

    async def abandon_queued_work_claim(self, claim: QueuedWorkClaim) -> None:
        await self._run(self._codec.abandon_claim(claim))

    async def cancel_queued_work_batch(self, session_id: str, batch_id: str) -> QueuedWorkBatch | None:
        return await self._run(self._codec.cancel(session_id, batch_id))

    async def list_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        return await self._run(self._codec.list_queue(session_id, pending=False))

    async def list_pending_queued_work(self, session_id: str) -> list[QueuedWorkBatch]:
        return await self._run(self._codec.list_queue(session_id, pending=True))

    # -- metadata ------------------------------------------------------------------------------------------
    async def save_session_meta(self, meta: SessionMeta) -> None:
        await self._run(self._codec.save_meta(meta))

    async def load_session_meta(self) -> SessionMeta | None:
        return await self._run(self._codec.load_meta())

    async def load_picker_info(self) -> SessionPickerInfo | None:
        return await self._run(self._codec.picker_info())

    # -- maintenance ---------------------------------------------------------------------------------------
    async def tombstone_nodes(self, ids: Sequence[str]) -> None:
        await self._run(self._codec.tombstone(ids))

    async def vacuum(self) -> VacuumReport:
        return await self._run(self._codec.vacuum())

    async def gc_unreachable(self) -> GcReport:
        return await self._run(self._codec.gc())

    # -- attachment manifest -------------------------------------------------------------------------------
    async def record_intent(self, intent: AttachmentIntent) -> None:
        await self._run(self._codec.record_intent(intent))

    async def commit_refs(self, session_id: str, attachment_ids: Sequence[str]) -> None:
        await self._run(self._codec.commit_refs(session_id, attachment_ids))

    async def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]:
        return await self._run(self._codec.list_uncommitted(older_than_epoch_ms))

    async def forget(self, attachment_id: str) -> None:
        await self._run(self._codec.forget(attachment_id))


class AsyncRedisStoreFactory:
    """Maps one session id to one namespace; every handle it makes is pre-bound to its session (§2.16)."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        key_prefix: str = "sf",
        clock: Callable[[], int] | None = None,
        durability: DurabilityTier = DurabilityTier.DURABLE,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self.key_prefix = key_prefix
        self._clock = clock
        self._durability = durability

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> AsyncRedisStoreFactory:
        return cls(async_client_from_url(url, cluster=cluster), owns_client=True, **options)

    @property
    def client(self) -> AsyncClient:
        return self._client

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def durability_tier(self) -> DurabilityTier:
        return self._durability

    def store(self, session_id: str) -> AsyncRedisStore:
        return AsyncRedisStore(
            self._client, session_id, key_prefix=self.key_prefix, clock=self._clock,
            durability=self._durability, bound_session_id=session_id,
        )

    async def create_store(self, request: SessionStoreCreateRequest) -> AsyncRedisStore:
        store = self.store(request.session_id)
        await store._run(store._codec.create(request))
        await self._client.zadd(index_key(self.key_prefix), {request.session_id: 0})
        return store

    async def open_existing_store(self, request: SessionStoreCreateRequest) -> AsyncRedisStore | None:
        store = self.store(request.session_id)
        return store if await store._run(store._codec.exists()) else None

    async def delete_session(self, session_id: str) -> None:
        store = self.store(session_id)
        for _ in range(100):
            members: Any = await self._client.smembers(store.keys.q_sessions)
            sessions = texts(members)
            if await store._run(store._codec.delete(sessions)):
                break
        else:  # pragma: no cover - a producer enqueueing for new sessions 100 times in a row
            raise BackendError(f"delete_session({session_id!r}) kept racing new queue sessions")
        await self._client.zrem(index_key(self.key_prefix), session_id)

    async def list_sessions(self) -> list[SessionPickerInfo]:
        ids: Any = await self._client.zrange(index_key(self.key_prefix), 0, -1)
        out = []
        for sid in texts(ids):
            info = await self.store(sid).load_picker_info()
            if info is not None:
                out.append(info)
        return out
