"""Private reads on both storage configurations, each asked as the owner, a follower, a
stranger, a blocked user and with no token: media carries the visibility of what shows it
(public post, followers-only story, expired story, deleted post), blob URLs are signed and
expire, and a block hides the blocker's profile."""

from __future__ import annotations

from tests.serving.social.api.helpers import Account, follow, jpeg, upload, users


def _ready_media(api, workers, account: Account, color: tuple[int, int, int]) -> int:
    reply = upload(api, account, jpeg(color=color))
    assert reply.status_code == 202, reply.text
    workers.drain()
    return reply.json()["id"]


def _media(api, account: Account | None, media_id: int):
    headers = account.auth if account is not None else {}
    return api.get(f"/v1/media/{media_id}", headers=headers)


def _cast(api):
    """owner (posts the media), fan (follows the owner), stranger, blocked (blocked by owner)."""
    owner, fan, stranger, blocked = users(api, "owner", "fan", "stranger", "blocked")
    follow(api, fan, owner)
    follow(api, blocked, owner)
    assert api.put(f"/v1/users/{blocked.id}/block", headers=owner.auth).status_code == 200
    return owner, fan, stranger, blocked


def test_story_media_is_for_followers_only_and_ends_with_the_story(api, workers, clock) -> None:
    owner, fan, stranger, blocked = _cast(api)
    media_id = _ready_media(api, workers, owner, (10, 200, 30))
    assert _media(api, fan, media_id).status_code == 404  # attached to nothing yet
    story = api.post("/v1/stories", json={"media_id": media_id}, headers=owner.auth)
    assert story.status_code == 201, story.text
    for who, status in ((owner, 200), (fan, 200), (stranger, 404), (blocked, 404), (None, 401)):
        assert _media(api, who, media_id).status_code == status, who
    url = _media(api, fan, media_id).json()["renditions"]["250"]["url"]
    assert api.get(url).status_code == 200  # the signed URL a follower was given works
    clock.advance(3_601)  # a URL handed out lives at most media.url_ttl_s, then it is refused
    assert api.get(url).status_code == 403
    clock.advance(86_400 - 3_601)  # the story expires
    assert _media(api, fan, media_id).status_code == 404
    assert _media(api, owner, media_id).status_code == 200


def test_post_media_follows_the_post(api, workers) -> None:
    owner, fan, stranger, blocked = _cast(api)
    media_id = _ready_media(api, workers, owner, (200, 10, 30))
    made = api.post("/v1/posts", json={"media_id": media_id}, headers=owner.auth)
    assert made.status_code == 201, made.text
    post_id = made.json()["id"]
    for who, status in ((owner, 200), (fan, 200), (stranger, 200), (blocked, 404), (None, 401)):
        assert _media(api, who, media_id).status_code == status, who
        headers = who.auth if who is not None else {}
        assert api.get(f"/v1/posts/{post_id}", headers=headers).status_code == status, who
    assert api.delete(f"/v1/posts/{post_id}", headers=owner.auth).status_code == 204
    for who, status in ((owner, 200), (fan, 404), (stranger, 404), (blocked, 404)):
        assert _media(api, who, media_id).status_code == status, who


def test_blob_urls_must_be_signed_and_unaltered(api, workers) -> None:
    owner, _fan, _stranger, _blocked = _cast(api)
    media_id = _ready_media(api, workers, owner, (30, 30, 200))
    url = _media(api, owner, media_id).json()["renditions"]["1440"]["url"]
    path, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&"))
    assert api.get(url).status_code == 200
    refused = [
        path,  # no signature at all (what a guessed key looks like)
        f"{path}?exp={params['exp']}",
        f"{path}?exp={int(params['exp']) + 3600}&sig={params['sig']}",  # a longer life
        f"{path}?exp={params['exp']}&sig={'A' * len(params['sig'])}",
    ]
    for attempt in refused:
        reply = api.get(attempt)
        assert reply.status_code == 403, attempt
        assert reply.json()["error"]["field"] == "sig"
    other = _media(api, owner, _ready_media(api, workers, owner, (1, 2, 3))).json()
    other_key = other["renditions"]["1440"]["url"].partition("?")[0].rsplit("/", 1)[1]
    swapped = f"/v1/blobs/{other_key}?{query}"  # one blob's signature on another key
    assert api.get(swapped).status_code == 403


def test_a_block_hides_the_profile_both_ways(api) -> None:
    owner, fan, stranger, blocked = _cast(api)
    for who, target, status in (
        (fan, owner, 200),
        (stranger, owner, 200),
        (blocked, owner, 404),
        (owner, blocked, 404),
        (owner, owner, 200),
    ):
        reply = api.get(f"/v1/users/{target.id}", headers=who.auth)
        assert reply.status_code == status, (who.username, target.username, reply.text)
    assert api.get(f"/v1/users/{owner.id}").status_code == 401
    assert api.get(f"/v1/users/{owner.id}/posts", headers=blocked.auth).status_code == 404
