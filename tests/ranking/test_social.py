"""End to end on a tiny synthetic social world: truth, features, a ranker, offline gains."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.preprocess import FittedPreprocessor, PreprocessConfig
from recsys.data.synthetic import SOCIAL_SCHEMA, TASKS, SocialConfig, SocialSource, write_entities
from recsys.data.synthetic.truth import truth_probabilities
from recsys.models.multitask import MultiTaskRanker
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.ranking import (
    AnnSource,
    AvailableFilter,
    BlockedAuthorFilter,
    DiversityRules,
    Funnel,
    InteractionLog,
    ItemCatalog,
    ItemToItemSource,
    ModelRanker,
    PopularRecentSource,
    SeenFilter,
    SocialFeatureBuilder,
    StageSizes,
    ValueFormula,
    build_index,
    explore,
)
from recsys.ranking.evaluate import TruthRanker, evaluate_funnel, social_truth
from recsys.ranking.ranker import frame_tensors

CFG = SocialConfig(
    seed=3,
    n_users=400,
    n_authors=60,
    n_posts=2000,
    n_impressions=30_000,
    days=10.0,
    chunk_rows=30_000,
    mean_follows=10.0,
    n_celebrities=2,
)


@pytest.fixture(scope="module")
def social(tmp_path_factory: pytest.TempPathFactory) -> dict:
    source = SocialSource(CFG)
    frame = pl.concat(list(source.iter_chunks()))
    paths = write_entities(CFG, tmp_path_factory.mktemp("entities"))
    ents = {k: pl.read_parquet(p) for k, p in paths.items()}
    split = CFG.start_timestamp + int(0.8 * (CFG.end_timestamp - CFG.start_timestamp))
    train = frame.filter(pl.col("timestamp") < split)
    test = frame.filter(pl.col("timestamp") >= split)
    log = InteractionLog.from_frame(train, TASKS)
    # Cheap "learned" embeddings for ANN / item-to-item: truncated SVD of engagement.
    m = np.zeros((CFG.n_users, CFG.n_posts), np.float32)
    np.add.at(m, (log.users, log.items), (log.weights > 0).astype(np.float32))
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    user_vec, item_vec = u[:, :16] * s[:16], vt[:16].T.copy()
    catalog = ItemCatalog.from_posts(ents["posts"])
    # Held-out users: the most active in the test period.
    users = (
        test.group_by("user_id")
        .len()
        .sort(["len", "user_id"], descending=[True, False])
        .head(12)["user_id"]
        .cast(pl.Int64)
        .to_list()
    )
    return dict(
        source=source,
        world=source.world,
        frame=frame,
        ents=ents,
        split=split,
        train=train,
        log=log,
        user_vec=user_vec,
        item_vec=item_vec,
        catalog=catalog,
        users=users,
    )


def _funnel(social: dict, ranker, diversity: DiversityRules | None = None) -> Funnel:
    index = build_index(social["item_vec"])
    log, catalog = social["log"], social["catalog"]
    return Funnel(
        sources=[
            AnnSource(index, social["user_vec"]),
            ItemToItemSource(index, social["item_vec"], log, n_recent=5),
            PopularRecentSource(log, window_s=2 * 86_400),
        ],
        ranker=ranker,
        value=ValueFormula(),
        catalog=catalog,
        filters=[SeenFilter(log), BlockedAuthorFilter(catalog, {}), AvailableFilter(catalog)],
        diversity=diversity if diversity is not None else DiversityRules(max_per_topic=4),
        sizes=StageSizes(retrieve=600, rank=200, page=20),
        quotas={"ann": 300, "item2item": 200, "popular": 100},
    )


def test_truth_matches_generator_probabilities(social: dict) -> None:
    f = social["frame"].head(3000)
    p = truth_probabilities(
        social["world"],
        f["user_id"].cast(pl.Int64).to_numpy(),
        f["post_id"].cast(pl.Int64).to_numpy(),
        f["timestamp"].to_numpy(),
    )
    expected = f.select([f"p_{t}" for t in TASKS]).to_numpy()
    np.testing.assert_allclose(p, expected, atol=2e-6, rtol=1e-4)


def test_feature_builder_reproduces_impression_features(social: dict) -> None:
    pre = FittedPreprocessor.fit(social["train"].lazy(), SOCIAL_SCHEMA, PreprocessConfig())
    e = social["ents"]
    fb = SocialFeatureBuilder(e["users"], e["posts"], e["follows"], pre)
    user = social["users"][0]
    rows = social["frame"].filter(pl.col("user_id") == str(user)).head(40)
    assert rows.height > 10
    for ts, group in rows.group_by("timestamp"):
        items = group["post_id"].cast(pl.Int64).to_numpy()
        raw = fb.raw_frame(user, items, int(ts[0]))
        for col in SOCIAL_SCHEMA.dense:
            np.testing.assert_allclose(raw[col].to_numpy(), group[col].to_numpy(), rtol=1e-9)
        for col in SOCIAL_SCHEMA.sparse:
            assert raw[col].to_list() == group[col].to_list(), col


def test_end_to_end_with_model_ranker(social: dict) -> None:
    torch.manual_seed(0)
    pre = FittedPreprocessor.fit(social["train"].lazy(), SOCIAL_SCHEMA, PreprocessConfig())
    spec = pre.feature_spec()
    emb = build_embeddings(embedding_tables(spec, EmbeddingConfig(dim=8)), fused=False)
    model = MultiTaskRanker(spec, emb, num_experts=2, expert_mlp=[16], tower_mlp=[8])
    # Brief training (a few epochs of full-batch Adam on the training impressions).
    prepared = pre.transform(social["train"])
    dense, sparse = frame_tensors(prepared, spec)
    labels = torch.from_numpy(prepared.select(list(TASKS)).to_numpy())
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(dense, sparse), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    e = social["ents"]
    ranker = ModelRanker(model, SocialFeatureBuilder(e["users"], e["posts"], e["follows"], pre))
    funnel = _funnel(social, ranker)
    page = explore(social["users"][0], funnel, social["split"])
    assert len(page.items) == 20
    d = page.to_dict()
    assert set(d["latency_ms"]) == {"retrieve", "rank", "rerank", "total"}
    assert all(v >= 0 for v in d["latency_ms"].values())
    for it in page.items:
        assert set(it.probs) == set(TASKS) and all(0 < p < 1 for p in it.probs.values())
        assert it.source in it.sources
    seen = social["log"].seen(social["users"][0], social["split"])
    assert not np.isin(page.item_ids, seen).any()
    authors = [it.author for it in page.items]
    assert all(a != b for a, b in itertools.pairwise(authors))
    ev = evaluate_funnel(
        funnel, social["users"][:6], social["split"], social_truth(social["world"])
    )
    print("model ranker:", ev.to_dict())
    assert ev.value["ranked"] > ev.value["retrieval"]


def test_oracle_ranker_beats_retrieval_order(social: dict) -> None:
    truth = social_truth(social["world"])
    funnel = _funnel(social, TruthRanker(truth))
    ev = evaluate_funnel(funnel, social["users"], social["split"], truth)
    print("oracle ranker:", ev.to_dict())
    assert ev.n_requests == len(social["users"])
    assert ev.page_len["funnel"] == 20
    assert ev.value["ranked"] >= ev.value["funnel"] > ev.value["retrieval"]
    assert ev.gain("funnel", "retrieval") > 0.1
