"""Tests of the synthetic social-app generator (recsys.data.synthetic)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from recsys.data.source import ROW_COLUMN, RawSource
from recsys.data.synthetic import (
    DENSE,
    SOCIAL_SCHEMA,
    SPARSE,
    TASKS,
    TRUTH_COLUMNS,
    SocialConfig,
    SocialSource,
    build_world,
    write_entities,
)
from recsys.data.synthetic.schema import column_dtypes
from recsys.metrics import auc

SMALL = SocialConfig(
    seed=3, n_users=3_000, n_authors=300, n_posts=6_000, n_impressions=80_000, chunk_rows=30_000
)


def _frame(config: SocialConfig) -> pl.DataFrame:
    return pl.concat(list(SocialSource(config).iter_chunks()))


@pytest.fixture(scope="module")
def small() -> pl.DataFrame:
    return _frame(SMALL)


def test_is_a_raw_source_with_expected_columns_and_dtypes(small: pl.DataFrame) -> None:
    source = SocialSource(SMALL)
    assert isinstance(source, RawSource)
    assert source.schema == SOCIAL_SCHEMA
    assert small.columns == [*SOCIAL_SCHEMA.columns(), ROW_COLUMN]
    expected = {
        **dict.fromkeys(TASKS, pl.Float32),
        **dict.fromkeys(DENSE, pl.Float64),
        **dict.fromkeys(SPARSE, pl.Utf8),
        "timestamp": pl.Int64,
        **dict.fromkeys(TRUTH_COLUMNS, pl.Float32),
        ROW_COLUMN: pl.Int64,
    }
    assert dict(small.schema) == expected
    assert dict(small.schema) == {**column_dtypes(), ROW_COLUMN: pl.Int64}  # the one schema
    assert small.null_count().to_numpy().sum() == 0
    for task in TASKS:
        assert set(small[task].unique().to_list()) <= {0.0, 1.0}
    assert set(small["is_following"].unique().to_list()) == {"0", "1"}
    # Feature columns are only what a logging system would have: no latent variables.
    features = {*SOCIAL_SCHEMA.dense, *SOCIAL_SCHEMA.sparse}
    assert not features & {*TRUTH_COLUMNS, *TASKS}


def test_describe_is_json_and_counts_entities() -> None:
    source = SocialSource(SMALL)
    facts = source.describe()
    json.dumps(facts)
    assert facts["config"]["seed"] == SMALL.seed
    entities = facts["entities"]
    assert entities["users"] == 3_000 and entities["authors"] == 300
    assert entities["posts"] == 6_000 and entities["celebrities"] == SMALL.n_celebrities
    assert entities["follows"] > 3_000


def test_same_seed_same_frames_other_seed_differs(small: pl.DataFrame) -> None:
    again = _frame(SMALL)
    assert again.equals(small)
    other = _frame(dataclasses.replace(SMALL, seed=4))
    assert other.height == small.height
    assert not other.equals(small)
    assert not np.array_equal(other["p_like"].to_numpy(), small["p_like"].to_numpy())


def test_chunk_size_changes_only_the_cut(small: pl.DataFrame) -> None:
    config = dataclasses.replace(SMALL, chunk_rows=7_000)
    source = SocialSource(config)
    chunks = list(source.iter_chunks())
    heights = [c.height for c in chunks]
    assert heights[:-1] == [7_000] * (len(chunks) - 1) and 0 < heights[-1] <= 7_000
    assert sum(heights) == config.n_impressions == source.report.rows_read
    assert pl.concat(chunks).equals(small)


def test_streaming_is_in_time_order(small: pl.DataFrame) -> None:
    assert small.height == SMALL.n_impressions
    assert small[ROW_COLUMN].to_list() == list(range(SMALL.n_impressions))
    ts = small["timestamp"].to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert ts.min() >= SMALL.start_timestamp and ts.max() < SMALL.end_timestamp
    assert (small["post_age_hours"].to_numpy() >= 0).all()


def test_label_rates_in_intended_ranges(small: pl.DataFrame) -> None:
    rates = {t: float(small[t].mean()) for t in TASKS}
    assert 0.05 <= rates["like"] <= 0.15
    for task in ("comment", "share", "save"):
        assert 0.005 <= rates[task] <= 0.03, (task, rates[task])
    assert 0.15 <= rates["long_dwell"] <= 0.25
    for task, target in zip(TASKS, SMALL.base_rates()):
        assert rates[task] == pytest.approx(target, rel=0.15)
        # The truth probabilities are calibrated too.
        assert float(small[f"p_{task}"].mean()) == pytest.approx(target, rel=0.1)


def test_tasks_are_correlated_but_distinct(small: pl.DataFrame) -> None:
    p = small.select(TRUTH_COLUMNS).to_numpy().astype(np.float64)
    corr = np.corrcoef(np.log(p / (1 - p)).T)[np.triu_indices(len(TASKS), 1)]
    assert (corr > 0.4).all() and (corr < 0.95).all(), corr  # shared terms, own terms
    y = small.select(TASKS).to_numpy()
    liked = y[:, 0] == 1
    for j, task in enumerate(TASKS[1:], start=1):
        lift = y[liked, j].mean() / y[:, j].mean()
        assert lift > 1.3, (task, lift)


def test_follower_counts_follow_a_power_law() -> None:
    config = SocialConfig(n_impressions=1_000)  # default-sized entities
    world = build_world(config)
    followers = np.sort(world.follower_counts())[::-1]
    top = followers[: len(followers) // 100].sum() / followers.sum()
    assert top > 0.15, f"top 1% of authors hold only {top:.1%} of follows"
    celebrities = world.follower_counts()[world.author_celebrity]
    assert len(celebrities) == config.n_celebrities
    assert celebrities.min() > 0.1 * config.n_users  # a large share of users follow each
    assert celebrities.min() > 20 * np.median(followers)
    # The tail beyond the celebrities is heavy as well: a few authors far above the median.
    assert followers[config.n_celebrities] > 5 * np.median(followers)


def test_follow_graph_is_a_valid_point_in_time_table(small: pl.DataFrame, tmp_path: Path) -> None:
    paths = write_entities(SMALL, tmp_path)
    users = pl.read_parquet(paths["users"])
    posts = pl.read_parquet(paths["posts"])
    follows = pl.read_parquet(paths["follows"])
    assert users.height == SMALL.n_users and posts.height == SMALL.n_posts
    assert follows.columns == ["follower_id", "followee_id", "created_at"]
    assert follows.schema["follower_id"] == pl.Utf8 and follows.schema["created_at"] == pl.Int64
    assert (follows["follower_id"] != follows["followee_id"]).all()
    assert follows.select(["follower_id", "followee_id"]).is_unique().all()
    authors = set(users.filter(pl.col("is_author"))["user_id"].to_list())
    assert set(follows["followee_id"].unique().to_list()) <= authors
    assert set(posts["author_id"].unique().to_list()) <= authors
    assert int(users["follow_count"].sum()) == follows.height
    # Impressions agree with the tables: post ids/authors and is_following at impression time.
    joined = small.join(posts.select("post_id", "author_id"), on="post_id", suffix="_table")
    assert joined.height == small.height
    assert (joined["author_id"] == joined["author_id_table"]).all()
    edges = follows.rename({"follower_id": "user_id", "followee_id": "author_id"})
    check = small.join(edges, on=["user_id", "author_id"], how="left")
    active = check["created_at"].is_not_null() & (check["created_at"] <= check["timestamp"])
    assert ((check["is_following"] == "1") == active).all()


def test_truth_is_informative_and_beats_a_linear_model(small: pl.DataFrame) -> None:
    truth = {t: auc(small[t], small[f"p_{t}"]) for t in TASKS}
    assert all(v > 0.72 for v in truth.values()), truth
    assert truth["like"] > 0.78

    categorical = ["topic", "media_type", "country", "age_bucket", "user_activity", "is_following"]
    x_cat = OneHotEncoder(handle_unknown="ignore").fit_transform(
        small.select(categorical).to_numpy()
    )
    dense = small.select(DENSE).to_numpy()
    dense = np.column_stack([np.log1p(dense[:, 0]), dense[:, 1], dense[:, 2], np.log(dense[:, 3])])
    dense = (dense - dense.mean(axis=0)) / dense.std(axis=0)
    x = sparse.hstack([x_cat, sparse.csr_matrix(dense)]).tocsr()
    n_train = 60_000
    y = small["like"].to_numpy()
    model = LogisticRegression(max_iter=500).fit(x[:n_train], y[:n_train])
    linear = auc(y[n_train:], model.predict_proba(x[n_train:])[:, 1])
    best = auc(y[n_train:], small["p_like"].to_numpy()[n_train:])
    assert linear > 0.6  # the observable features carry signal...
    assert linear < best - 0.06, (linear, best)  # ...but crosses and embeddings have room to win


def test_tiny_and_degenerate_configs_still_generate() -> None:
    configs = [
        SocialConfig(n_users=5, n_authors=1, n_posts=1, n_impressions=50, n_celebrities=0),
        SocialConfig(n_users=40, n_authors=40, n_posts=10, n_impressions=300, n_celebrities=20),
        SocialConfig(
            n_users=30, n_authors=3, n_posts=5, n_impressions=20, n_celebrities=0, mean_follows=0.01
        ),
    ]
    for config in configs:
        frame = _frame(config)
        assert frame.height == config.n_impressions
        assert (frame["post_age_hours"] >= 0).all()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_authors": 10, "n_users": 5}, "n_authors"),
        ({"n_celebrities": 2_000}, "n_celebrities"),
        ({"like_rate": 1.5}, "base rates"),
        ({"follow_feed_share": -0.1}, "follow_feed_share"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_validation(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SocialConfig(**overrides)


def test_generator_modules_import_in_one_direction() -> None:
    """No import cycle among the generator's modules, counting imports under TYPE_CHECKING."""
    folder = Path(__file__).resolve().parents[2] / "recsys" / "data" / "synthetic"
    prefix = "recsys.data.synthetic."
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[path.stem] = {
            node.module.removeprefix(prefix)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix)
        }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in done:
            for target in sorted(graph.get(module, ())):
                visit(target, (*path, module))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())
