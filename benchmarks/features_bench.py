"""The feature store's read paths, each next to a baseline measured in the same run.

Online (``--calls`` timed calls per path and batch size, paths alternating call by call):
the user features a ranker reads (profile, activity counts, followee count: 6 features from 3
views) for 1, 100 and 500 random users through

- ``feast sqlite``: ``FeatureStore.get_online_features`` on the SQLite online store;
- ``feast redis``: the same on the Redis online store;
- ``fast redis``: :class:`recsys.features.online.RedisFeatureReader` (Feast's Redis layout
  read directly: one HMGET per user in one pipeline, keys built without protos);
- ``direct redis`` (the baseline): the same values in plain hashes, one HMGET pipeline,
  decoded by type.

p50 / p99 in ms and the ratio of p99s to the baseline (issue 11's aim: Feast on Redis at 500
users within 1.5x of the direct read).

Historical: the training set's point-in-time join of ``--impressions`` labels through Feast
(``get_historical_features`` on DuckDB) against a Polars ``join_asof`` of the same source
tables (latest row at or before each label, ties by ``created``, TTL as the tolerance), rows/s
and the ratio; the two are checked equal.

Run: ``recsys bench features [--users 5000 --impressions 50000 --calls 200]`` (needs the Redis
of ``scripts/services.sh``; ``RECSYS_TEST_REDIS_URL``). Temporary folders, a unique Feast project
and key prefix are used and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared bench_machine module
from bench_machine import cpu_model

REDIS = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
BATCHES = (1, 100, 500)
USER_REFS = [
    "user_profile:country",
    "user_profile:age_bucket",
    "user_activity:impressions_1h",
    "user_activity:impressions_1d",
    "user_activity:impressions_7d",
    "user_follows:follow_count",
]


def machine() -> dict[str, Any]:
    model = cpu_model()
    import duckdb
    import feast
    import redis

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "feast": feast.__version__,
        "duckdb": duckdb.__version__,
        "redis_py": redis.__version__,
        "polars": pl.__version__,
        "gpus": 0,
        "load_average_at_start": os.getloadavg()[0],
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class DirectRedis:
    """The baseline: the same user values in plain hashes ``<prefix><id>``, field per feature."""

    def __init__(self, url: str, prefix: str, values: dict[str, dict[str, Any]]) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.features = [r.partition(":")[2] for r in USER_REFS]
        self.ints = {f for f in self.features if f not in ("country", "age_bucket")}
        with self.client.pipeline(transaction=False) as pipe:
            for uid, row in values.items():
                mapping = {f: str(v) for f, v in row.items() if v is not None}
                if mapping:
                    pipe.hset(f"{prefix}{uid}", mapping=mapping)
            pipe.execute()

    def fetch(self, ids: list[str]) -> dict[str, list[Any]]:
        with self.client.pipeline(transaction=False) as pipe:
            for uid in ids:
                pipe.hmget(f"{self.prefix}{uid}", self.features)
            replies = pipe.execute()
        out: dict[str, list[Any]] = {f: [] for f in self.features}
        for reply in replies:
            for f, raw in zip(self.features, reply):
                if raw is None:
                    out[f].append(None)
                else:
                    out[f].append(int(raw) if f in self.ints else raw.decode())
        return out

    def close(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
        for lo in range(0, len(keys), 1000):
            self.client.delete(*keys[lo : lo + 1000])
        self.client.close()


def polars_training_set(sources: Path, labels: pl.DataFrame) -> pl.DataFrame:
    """The training set's features by ``join_asof`` of the source tables (the baseline)."""
    from recsys.features.schema import ACTIVITY_TTL_S, CREATED, EVENT_TIMESTAMP, VIEWS

    left = labels.select(
        "user_id",
        "post_id",
        "author_id",
        pl.concat_str("user_id", pl.lit(":"), "author_id").alias("user_author_id"),
        pl.from_epoch("timestamp", "s").cast(pl.Datetime("us", "UTC")).alias(EVENT_TIMESTAMP),
        pl.col("timestamp").alias("request_ts"),
        pl.int_range(pl.len()).alias("_row"),
    ).sort(EVENT_TIMESTAMP)
    wanted = {
        "post": ["post_length", "topic", "media_type", "created_at"],
        "user_profile": ["country", "age_bucket", "user_activity"],
        "follow_pair": ["is_following"],
        "author_followers": ["follower_count"],
        "user_follows": ["follow_count"],
    }
    for view, features in wanted.items():
        source, key, _ = VIEWS[view]
        right = pl.read_parquet(sources / f"{source}.parquet")
        order = [EVENT_TIMESTAMP, CREATED] if CREATED in right.columns else [EVENT_TIMESTAMP]
        right = right.sort(order).select(key, EVENT_TIMESTAMP, *features)
        tolerance = f"{ACTIVITY_TTL_S}s" if view in ("user_activity", "author_posting") else None
        left = left.join_asof(
            right,
            on=EVENT_TIMESTAMP,
            by=key,
            strategy="backward",
            tolerance=tolerance,
            check_sortedness=False,  # both sides sorted above
        )
    return left.sort("_row").with_columns(
        ((pl.col("request_ts") - pl.col("created_at")) / 3600.0).alias("post_age_hours")
    )


def _mismatches(a: pl.Series, b: pl.Series) -> int:
    """Rows where ``a`` and ``b`` differ (nulls equal; numbers within 1e-9: Feast returns
    nullable integers as floats)."""
    if a.dtype.is_numeric() and b.dtype.is_numeric():
        x, y = a.cast(pl.Float64), b.cast(pl.Float64)
        both = x.is_null() & y.is_null()
        close = ((x - y).abs() <= 1e-9).fill_null(False)
        return int((~(both | close)).sum())
    return int((a.cast(pl.Utf8).fill_null("~") != b.cast(pl.Utf8).fill_null("~")).sum())


def _time_online(
    paths: dict[str, Callable[[list[str]], Any]], users: list[str], calls: int, seed: int
) -> dict[int, dict[str, list[float]]]:
    rng = np.random.default_rng(seed)
    out: dict[int, dict[str, list[float]]] = {}
    names = list(paths)
    for n in BATCHES:
        times: dict[str, list[float]] = {p: [] for p in names}
        for p in names:  # warm-up
            paths[p](list(rng.choice(users, n)))
        for call in range(calls):
            ids = [str(u) for u in rng.choice(users, n, replace=False)]
            for p in names[call % len(names) :] + names[: call % len(names)]:
                t0 = time.perf_counter()
                paths[p](ids)
                times[p].append((time.perf_counter() - t0) * 1000)
        out[n] = times
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--impressions", type=int, default=50_000)
    p.add_argument("--calls", type=int, default=200, help="timed calls per path and batch")
    p.add_argument("--redis", default=REDIS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.users < max(BATCHES):
        p.error(f"--users must be at least {max(BATCHES)} (the largest batch)")
    info = machine()
    print(
        f"machine: {info['cpus']} cpus ({info['cpu_model']}), python {info['python']}, feast "
        f"{info['feast']}, duckdb {info['duckdb']}, redis-py {info['redis_py']}, polars "
        f"{info['polars']}, gpus {info['gpus']}, load average {info['load_average_at_start']:.2f}",
        flush=True,
    )
    from pipelines.feature_sources import synthetic_inputs, write_feature_data
    from recsys.data.synthetic import SocialConfig
    from recsys.features.materialize import materialize
    from recsys.features.online import RedisFeatureReader
    from recsys.features.schema import FEATURE_REFS
    from recsys.features.store import StoreSettings, open_store
    from recsys.features.training import historical_features

    config = SocialConfig(
        n_users=args.users,
        n_authors=max(20, args.users // 10),
        n_posts=args.users * 2,
        n_impressions=args.impressions,
        chunk_rows=min(250_000, args.impressions),
        seed=args.seed,
    )
    tables, labels = synthetic_inputs(config)
    project = f"bench_{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {"machine": info, "users": args.users, "labels": labels.height}
    with tempfile.TemporaryDirectory(prefix="features-bench-") as tmp:
        stores = {}
        for kind in ("sqlite", "redis"):
            folder = Path(tmp) / kind
            write_feature_data(tables, labels, folder, apply=False)
            settings = StoreSettings(
                folder,
                online=kind,
                redis_url=args.redis if kind == "redis" else None,
                project=project,
            )
            stores[kind] = open_store(settings)
        end = datetime.fromtimestamp(int(labels["timestamp"].max()), UTC)
        for store in stores.values():
            materialize(store, end, start=datetime(1970, 1, 1, tzinfo=UTC))
        users = [str(u) for u in range(args.users)]
        fast = RedisFeatureReader(stores["redis"], USER_REFS)
        everyone = fast.fetch(users)
        direct = DirectRedis(
            args.redis,
            f"{project}:direct:",
            {u: {f: everyone[f][i] for f in everyone} for i, u in enumerate(users)},
        )

        def through_feast(kind: str) -> Callable[[list[str]], dict[str, list[Any]]]:
            store = stores[kind]

            def fetch(ids: list[str]) -> dict[str, list[Any]]:  # Feast's own path, unchecked
                got = store.get_online_features(features=USER_REFS, entity_rows={"user_id": ids})
                values = got.to_dict()
                return {r.partition(":")[2]: values[r.partition(":")[2]] for r in USER_REFS}

            return fetch

        paths = {
            "direct redis": direct.fetch,
            "fast redis": fast.fetch,
            "feast redis": through_feast("redis"),
            "feast sqlite": through_feast("sqlite"),
        }
        sample = users[:500]
        reference = direct.fetch(sample)
        equal = {name: fn(sample) == reference for name, fn in paths.items()}
        try:
            timings = _time_online(paths, users, args.calls, args.seed)
        finally:
            direct.close()
            fast.close()
        online: dict[str, Any] = {}
        print(
            f"\nonline: {len(USER_REFS)} user features, {args.calls} calls per path and size; "
            f"values equal to the baseline: {equal}"
        )
        print(f"{'users':>6} {'path':<13} {'p50 ms':>9} {'p99 ms':>9} {'p99 / direct':>13}")
        for n, times in timings.items():
            base = _pct(times["direct redis"], 0.99)
            for name, values in times.items():
                p50, p99 = statistics.median(values), _pct(values, 0.99)
                online.setdefault(str(n), {})[name] = {
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "ratio_p99": p99 / base,
                }
                print(f"{n:>6} {name:<13} {p50:>9.3f} {p99:>9.3f} {p99 / base:>12.2f}x")
        result["online"] = online
        result["values_equal"] = equal

        refs = list(FEATURE_REFS.values())
        store = stores["sqlite"]
        historical_features(store, labels.head(100), refs)  # warm-up (DuckDB, registry)
        t0 = time.perf_counter()
        feast_rows = historical_features(store, labels, refs)
        feast_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        polars_rows = polars_training_set(Path(tmp) / "sqlite" / "sources", labels)
        polars_s = time.perf_counter() - t0
        mismatches = {c: _mismatches(feast_rows[c], polars_rows[c]) for c in feast_rows.columns}
        n = labels.height
        print(f"\nhistorical: {n} labels, {len(refs)} features (the training set's)")
        print(f"{'path':<14} {'seconds':>9} {'rows/s':>12} {'vs polars':>10}")
        print(f"{'polars asof':<14} {polars_s:>9.3f} {n / polars_s:>12,.0f} {1.0:>9.2f}x")
        ratio = polars_s / feast_s
        print(f"{'feast duckdb':<14} {feast_s:>9.3f} {n / feast_s:>12,.0f} {ratio:>9.2f}x")
        print(f"mismatching values (feast vs polars): {sum(mismatches.values())} {mismatches}")
        result["historical"] = {
            "labels": n,
            "feast_seconds": feast_s,
            "polars_seconds": polars_s,
            "feast_rows_per_s": n / feast_s,
            "polars_rows_per_s": n / polars_s,
            "ratio_rows_per_s": (n / feast_s) / (n / polars_s),
            "mismatches": mismatches,
        }
        stores["redis"].teardown()
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


if __name__ == "__main__":
    main()
