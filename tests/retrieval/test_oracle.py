"""The retrieval ceiling on synthetic data: ranking by the generator's true probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.retrieval_data import RetrievalDataSpec, build_retrieval_data
from recsys.data.synthetic import SocialConfig, SocialSource
from recsys.retrieval.baselines import MostPopular
from recsys.retrieval.evaluate import evaluate_topk, relevant_and_known
from recsys.retrieval.oracle import oracle_metrics
from recsys.train.retrieval_run import read_frame

SPEC = RetrievalDataSpec(
    user="user_id",
    item="post_id",
    user_features=["country"],
    item_features=["topic"],
    positive_labels=["like", "comment", "share", "save"],
)


@pytest.fixture(scope="module")
def world_data_frame():
    source = SocialSource(
        SocialConfig(n_users=800, n_authors=80, n_posts=1500, n_impressions=40000, chunk_rows=20000)
    )
    frame = read_frame(source)
    return source.world, build_retrieval_data(frame, SPEC), frame


def test_true_probabilities_rank_far_above_popularity_and_chance(world_data_frame) -> None:
    world, data, frame = world_data_frame
    oracle = oracle_metrics(world, data, frame, ks=(10, 50))
    known = data.known("test")
    users, relevant, _ = relevant_and_known(data.splits["test"], known)
    assert oracle["users"] == len(users) and not oracle["sampled"]
    popular = evaluate_topk(
        MostPopular().fit(known).recommend(users, 50, exclude=known), relevant, (10, 50)
    )
    rng = np.random.default_rng(0)
    chance = np.stack([rng.permutation(len(data.items))[:50] for _ in users])
    random = evaluate_topk(chance, relevant, (10, 50))
    assert oracle["recall@10"] > 1.5 * popular["recall@10"] > 0
    assert oracle["recall@50"] > 3 * random["recall@50"]
    assert 0 < oracle["recall@10"] <= oracle["recall@50"] <= 1


def test_a_sample_of_users_and_unknown_labels(world_data_frame) -> None:
    world, data, frame = world_data_frame
    sample = oracle_metrics(world, data, frame, ks=(10,), max_users=100, seed=1)
    assert sample["users"] == 100 and sample["sampled"]
    data.spec.positive_labels.append("retweet")
    try:
        with pytest.raises(ValueError, match="retweet"):
            oracle_metrics(world, data, frame, ks=(10,))
    finally:
        data.spec.positive_labels.pop()
