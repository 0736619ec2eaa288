"""The social backend's hot paths on real PostgreSQL + Redis, each next to a raw Redis baseline
measured in the same run.

Fanout writes (one post pushed into N followers' timelines):

- ``raw ZADD``: the baseline, a redis-py pipeline (no MULTI) of one ZADD per follower, in
  chunks of 1,000 (what a hand-written fanout would do; it never trims);
- ``timeline.push``: our ``RedisTimelineStore.push`` (a Lua script per 1,000 followers that adds
  and trims each timeline to its cap) on the same followers;
- ``fanout service``: ``FanoutService.on_post_created`` end to end: the post lookup, follower
  count and follower pages from PostgreSQL (active followers only), then ``timeline.push``.

Each is timed ``--posts`` times (fresh post ids) and reported as timeline inserts/s; the ratio
is ours / raw (1.0 = as fast as the raw pipeline).

Feed reads (``--reads`` times, after a warm-up, no ranking): ``FeedService.home`` for a user
following ``--followees`` pushed authors and ``--celebrities`` pulled ones (graph, block and
post lookups in PostgreSQL, timeline page in Redis, merge, filter, post views), next to the
baseline of one raw ``ZREVRANGE`` of the same timeline. p50/p99 in ms and the ratio of p99s.

Targets (issue 4): >= 30,000 timeline inserts/s per worker process, feed reads < 5 ms p99.

Run: ``recsys bench backend`` (needs ``scripts/services.sh start``; PostgreSQL and Redis on
127.0.0.1) with ``--followers 10000 --posts 20 --reads 2000`` by default (under a minute). A
temporary database and a unique Redis key prefix are used and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

from serving.social.backend import open_backend
from serving.social.clock import SystemClock
from serving.social.settings import settings_from_mapping
from serving.social.storage.redis import make_redis
from serving.social.storage.sql import make_engine, migrate
from serving.social.storage.sql.schema import follows, posts, users

PG = os.environ.get(
    "RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg://recsys@127.0.0.1:55432/recsys"
)
REDIS = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _create_database(server_url: str) -> tuple[str, str]:
    name = f"recsys_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url.rpartition('/')[0]}/{name}", name


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(url: str, n_followers: int, n_followees: int, n_celebrities: int, now: float) -> dict:
    """Users, follows and posts written in bulk (the services are not what is measured here)."""
    engine = make_engine(url)
    migrate(engine)
    n_users = 2 + n_followers + n_followees + n_celebrities
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [
                {
                    "username": f"u{i}",
                    "password_hash": "x",
                    "created_at": now,
                    "last_active_at": now,
                    "country": "",
                    "age_bucket": "",
                }
                for i in range(n_users)
            ],
        )
        ids = [r[0] for r in conn.execute(sa.select(users.c.id).order_by(users.c.id))]
        author, reader = ids[0], ids[1]
        fans = ids[2 : 2 + n_followers]
        followees = ids[2 + n_followers : 2 + n_followers + n_followees]
        celebrities = ids[2 + n_followers + n_followees :]
        rows = [{"follower_id": f, "followee_id": author, "created_at": now} for f in fans]
        rows += [{"follower_id": reader, "followee_id": f, "created_at": now} for f in followees]
        rows += [{"follower_id": reader, "followee_id": c, "created_at": now} for c in celebrities]
        # make the celebrities celebrities: every fan follows them too
        rows += [
            {"follower_id": f, "followee_id": c, "created_at": now}
            for c in celebrities
            for f in fans
        ]
        conn.execute(follows.insert(), rows)
        post_rows = [
            {
                "author_id": a,
                "created_at": now - 3_600 + i,
                "caption": f"post {i}",
                "media_type": "text",
                "topic": "bench",
            }
            for i in range(30)
            for a in [*followees, *celebrities]
        ]
        conn.execute(posts.insert(), post_rows)
    engine.dispose()
    return {"author": author, "reader": reader, "fans": fans}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument(
        "--followees", type=int, default=200, help="pushed authors the reader follows"
    )
    parser.add_argument(
        "--celebrities", type=int, default=3, help="pulled authors the reader follows"
    )
    parser.add_argument("--postgres-url", default=PG)
    parser.add_argument("--redis-url", default=REDIS)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--plot", default=None, help="a latency histogram PNG of feed reads")
    args = parser.parse_args(argv)

    client = make_redis(args.redis_url)
    try:
        client.ping()
    except Exception as error:
        raise SystemExit(
            f"backend bench: Redis at {args.redis_url} unreachable ({error}); "
            "run scripts/services.sh start"
        ) from None
    url, db_name = _create_database(args.postgres_url)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    now = time.time()
    try:
        seeded = _seed(url, args.followers, args.followees, args.celebrities, now)
        settings = settings_from_mapping(
            {
                "storage": "production",
                "postgres_url": url,
                "redis_url": args.redis_url,
                "redis_prefix": prefix,
                "fanout": {"threshold": args.followers + 1},  # the celebrities have one more
                "rate_limits": {"enabled": False},
            }
        )
        backend = open_backend(settings, SystemClock())
        timelines = backend.storage.timelines
        fans = seeded["fans"]

        # --- fanout writes -----------------------------------------------------------------
        def raw_zadd(post_id: int) -> None:
            for start in range(0, len(fans), 1_000):
                pipe = client.pipeline(transaction=False)
                for f in fans[start : start + 1_000]:
                    pipe.zadd(f"{prefix}raw:{f}", {post_id: post_id})
                pipe.execute()

        with backend.storage.metadata.transaction() as tx:
            post_ids = [
                tx.create_post(seeded["author"], now, caption=f"bench {i}").id
                for i in range(args.posts * 3)
            ]
        results: dict[str, list[float]] = {"raw": [], "push": [], "service": []}
        ids = iter(post_ids)
        for _ in range(args.posts):  # interleaved, so drift hits all three alike
            p = next(ids)
            t = time.perf_counter()
            raw_zadd(p)
            results["raw"].append(time.perf_counter() - t)
            p = next(ids)
            t = time.perf_counter()
            timelines.push(p, fans)
            results["push"].append(time.perf_counter() - t)
            p = next(ids)
            t = time.perf_counter()
            written = backend.fanout.on_post_created(p, seeded["author"])
            results["service"].append(time.perf_counter() - t)
            assert written == len(fans) + 1, written
        rate = {k: len(fans) / statistics.median(v) for k, v in results.items()}

        # --- feed reads --------------------------------------------------------------------
        reader = seeded["reader"]
        backend.feed.rebuild(reader)
        key = f"{prefix}tl:{reader}"
        for _ in range(50):
            backend.feed.home(reader, 20)
            client.zrevrange(key, 0, 19)
        feed_ms: list[float] = []
        raw_ms: list[float] = []
        for _ in range(args.reads):
            t = time.perf_counter()
            page = backend.feed.home(reader, 20)
            feed_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            client.zrevrange(key, 0, 19)
            raw_ms.append((time.perf_counter() - t) * 1e3)
        assert len(page["items"]) == 20
        backend.close()
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=5_000))
        for start in range(0, len(keys), 5_000):
            client.delete(*keys[start : start + 5_000])
        _drop_database(args.postgres_url, db_name)

    if args.plot:
        from recsys.train.plots import latency_histogram_plot

        samples = {"feed": feed_ms, "raw ZREVRANGE": raw_ms}
        path = latency_histogram_plot(samples, Path(args.plot), "feed page read: latency")
        print(f"latency histogram: {path}")
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "followers": len(fans),
        "fanout_inserts_per_s": {
            "raw_pipelined_zadd": round(rate["raw"]),
            "timeline_push": round(rate["push"]),
            "fanout_service": round(rate["service"]),
        },
        "fanout_ratio_vs_raw": {
            "timeline_push": round(rate["push"] / rate["raw"], 2),
            "fanout_service": round(rate["service"] / rate["raw"], 2),
        },
        "feed_read_ms": {
            "feed_p50": round(_percentile(feed_ms, 0.5), 3),
            "feed_p99": round(_percentile(feed_ms, 0.99), 3),
            "raw_zrevrange_p50": round(_percentile(raw_ms, 0.5), 3),
            "raw_zrevrange_p99": round(_percentile(raw_ms, 0.99), 3),
        },
        "feed_p99_ratio_vs_raw": round(_percentile(feed_ms, 0.99) / _percentile(raw_ms, 0.99), 1),
        "targets": {
            "fanout_service >= 30000 inserts/s": rate["service"] >= 30_000,
            "feed p99 < 5 ms": _percentile(feed_ms, 0.99) < 5.0,
        },
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"figures: {args.json}")
    return report


if __name__ == "__main__":
    main()
