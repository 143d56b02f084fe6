"""The "explicitly empty" attachment manifest (contract §2.15, §1.16).

lash declares it with ``impl_noop_attachment_manifest!``. sessionfence stores are persistent and never use
it; it exists so a host that declares a non-persistent store can say so explicitly. It accepts every call
and always lists nothing. Deliberately not exported at the top level.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import AttachmentIntent, AttachmentManifestEntry

__all__ = ["NoopAttachmentManifest"]


class NoopAttachmentManifest:
    """Accepts every intent, commit stamp and forget; ``list_uncommitted`` is always ``[]``."""

    def record_intent(self, intent: AttachmentIntent) -> None:
        return None

    def commit_refs(self, session_id: str, attachment_ids: Sequence[str]) -> None:
        return None

    def list_uncommitted(self, older_than_epoch_ms: int) -> list[AttachmentManifestEntry]:
        return []

    def forget(self, attachment_id: str) -> None:
        return None
