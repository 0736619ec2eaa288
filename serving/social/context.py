"""What every service receives: the shared storage adapters, the settings, the clock and the
signer of blob URLs."""

from __future__ import annotations

from dataclasses import dataclass

from serving.social.blobsign import BlobSigner
from serving.social.clock import Clock
from serving.social.settings import BackendSettings
from serving.social.storage import Storage


@dataclass
class Context:
    storage: Storage
    settings: BackendSettings
    clock: Clock
    urls: BlobSigner
