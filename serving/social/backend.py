"""The composition root: storage, clock, ranking client and one instance of every service.

The HTTP app (:mod:`serving.social.api`), the workers (:mod:`serving.social.workers`), the CLI,
the demo and the tests all build a :class:`Backend` and use its services; the services
themselves never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.social.blobsign import BlobSigner, load_or_create_secret
from serving.social.clock import Clock, SystemClock
from serving.social.context import Context
from serving.social.ranking import RankingClient, make_ranking_client
from serving.social.services.accounts import AccountService
from serving.social.services.fanout import FanoutService
from serving.social.services.feed import FeedService
from serving.social.services.interactions import InteractionService
from serving.social.services.media import MediaService
from serving.social.services.posts import PostService
from serving.social.services.stories import StoryService
from serving.social.settings import BackendSettings
from serving.social.storage import Storage
from serving.social.storage.factory import open_storage


@dataclass
class Backend:
    ctx: Context
    ranking: RankingClient
    accounts: AccountService
    posts: PostService
    feed: FeedService
    fanout: FanoutService
    stories: StoryService
    interactions: InteractionService
    media: MediaService

    @property
    def settings(self) -> BackendSettings:
        return self.ctx.settings

    @property
    def storage(self) -> Storage:
        return self.ctx.storage

    def close(self) -> None:
        self.ranking.close()
        self.ctx.storage.close()


def blob_signer(settings: BackendSettings, clock: Clock) -> BlobSigner:
    """The signer of blob URLs: ``media.url_secret``, or the key file in ``data_dir``."""
    media = settings.media
    secret = (
        media.url_secret.encode()
        if media.url_secret
        else load_or_create_secret(Path(settings.data_dir) / "blob-url.key")
    )
    return BlobSigner(secret, media.url_ttl_s, clock)


def build_backend(
    settings: BackendSettings,
    storage: Storage,
    clock: Clock | None = None,
    ranking: RankingClient | None = None,
) -> Backend:
    """Services over already-open storage (tests inject storage, clock and ranker)."""
    clock = clock or SystemClock()
    ctx = Context(
        storage=storage, settings=settings, clock=clock, urls=blob_signer(settings, clock)
    )
    r = settings.ranker
    ranking = ranking or make_ranking_client(
        r.kind, r.url, r.timeout_ms, export_dir=r.export_dir, threads=r.threads
    )
    return Backend(
        ctx=ctx,
        ranking=ranking,
        accounts=AccountService(ctx),
        posts=PostService(ctx),
        feed=FeedService(ctx, ranking),
        fanout=FanoutService(ctx),
        stories=StoryService(ctx),
        interactions=InteractionService(ctx),
        media=MediaService(ctx),
    )


def open_backend(
    settings: BackendSettings, clock: Clock | None = None, ranking: RankingClient | None = None
) -> Backend:
    """Opens storage for ``settings`` and builds the services over it."""
    clock = clock or SystemClock()
    return build_backend(settings, open_storage(settings, clock), clock, ranking)
