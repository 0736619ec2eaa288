"""What every service receives: the shared storage adapters, the settings, the clock, the
signer of blob URLs and the in-memory usernames of post authors."""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.social.blobsign import BlobSigner
from serving.social.clock import Clock
from serving.social.settings import BackendSettings
from serving.social.storage import Storage
from serving.social.views import Usernames


@dataclass
class Context:
    storage: Storage
    settings: BackendSettings
    clock: Clock
    urls: BlobSigner
    names: Usernames = field(default_factory=Usernames)
