"""Real export folders for the inference tests, written by ``recsys.export``'s public
functions from small models over real prepared data (weights perturbed from their init so that
every table and layer matters), plus the eager reference of a set of feeds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.prepared import PreparedDataset
from recsys.data.retrieval_data import RetrievalData, RetrievalDataSpec, build_retrieval_data
from recsys.data.synthetic import SocialConfig, SocialSource
from recsys.export.ranker import ExportSettings, export_ranker_run
from recsys.export.two_tower import export_two_tower_run
from recsys.models.dlrm import DLRM
from recsys.models.multitask import MultiTaskRanker
from recsys.models.two_tower import TwoTower, TwoTowerSettings, build_two_tower
from recsys.modules.embedding import EmbeddingConfig, build_embeddings, embedding_tables
from recsys.retrieval.index import IndexConfig
from recsys.types import FeatureSpec


def _perturb(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def export_social_ranker(ds: PreparedDataset, out: Path, seed: int = 1) -> nn.Module:
    """A multi-task (MMoE) ranker over the social data set (weights perturbed with ``seed``),
    exported to ``out``."""
    torch.manual_seed(0)
    ebc = build_embeddings(embedding_tables(ds.spec, EmbeddingConfig(dim=8)), fused=False)
    model = MultiTaskRanker(ds.spec, ebc, num_experts=2, expert_mlp=[16], tower_mlp=[8])
    model = _perturb(model, seed)
    run = {"run_dir": str(out.parent), "experiment": "social_test"}
    export_ranker_run(model, ds, out, run=run, settings=ExportSettings(parity_rows=400))
    return model


def export_ctr_ranker(ds: PreparedDataset, separators: Mapping[str, str], out: Path) -> nn.Module:
    """A DLRM over the CTR table (hashed and multi-hot columns), exported to ``out``."""
    torch.manual_seed(0)
    ebc = build_embeddings(embedding_tables(ds.spec, EmbeddingConfig(dim=8)), fused=False)
    model = _perturb(DLRM(ds.spec, ebc, bottom_mlp=[8], top_mlp=[16]), 2)
    run = {"run_dir": str(out.parent), "experiment": "ctr_test"}
    export_ranker_run(
        model, ds, out, run=run, separators=separators, settings=ExportSettings(parity_rows=400)
    )
    return model


def eager_probabilities(
    model: nn.Module, spec: FeatureSpec, feeds: Mapping[str, np.ndarray]
) -> np.ndarray:
    """``B x T`` probabilities of the eager model on feeds in the export's layout."""
    names = spec.sparse_names
    kjt = KeyedJaggedTensor.from_lengths_sync(
        names,
        torch.from_numpy(np.concatenate([feeds[f"{f}.ids"] for f in names])),
        torch.from_numpy(np.concatenate([feeds[f"{f}.lengths"] for f in names])),
    )
    batch = len(feeds[f"{names[0]}.lengths"])
    dense = torch.from_numpy(feeds["dense"]) if "dense" in feeds else torch.zeros(batch, 0)
    with torch.no_grad():
        return torch.sigmoid(model(dense, kjt)).numpy()


TWO_TOWER_SOCIAL = SocialConfig(
    seed=9, n_users=200, n_authors=30, n_posts=500, n_impressions=8000, chunk_rows=8000
)


def social_interactions() -> pl.DataFrame:
    """The synthetic social impressions with a static list-valued item feature ``tags``
    (derived from the post id; some posts have none)."""
    frame = pl.concat(list(SocialSource(TWO_TOWER_SOCIAL).iter_chunks()))
    post = pl.col("post_id").cast(pl.Int64)
    tags = pl.concat_list(
        pl.format("k{}", post % 5), pl.format("k{}", post % 7), pl.format("k{}", post % 3)
    )
    return frame.with_columns(tags.list.head(post % 4).alias("tags"))


def export_social_two_tower(out: Path) -> tuple[TwoTower, RetrievalData, pl.DataFrame]:
    """A two-tower model of the social impressions (user and item side features, a multi-hot
    item feature), exported to ``out`` with a flat index."""
    frame = social_interactions()
    spec = RetrievalDataSpec(
        item="post_id",
        user_features=["country", "age_bucket", "user_activity"],
        item_features=["author_id", "topic", "media_type"],
        item_multi_features=["tags"],
        positive_labels=["like", "comment", "share", "save"],
        history_len=8,
    )
    data = build_retrieval_data(frame, spec)
    torch.manual_seed(0)
    settings = TwoTowerSettings(user_mlp=[16], item_mlp=[16], output_dim=8)
    model = _perturb(build_two_tower(data, settings, EmbeddingConfig(dim=8)), 3)
    users = data.user_table_at(frame, int(frame["timestamp"].max()) + 1)
    run = {"run_dir": str(out.parent), "experiment": "two_tower_test"}
    export_two_tower_run(model, data, users, IndexConfig(kind="flat"), out, run=run)
    return model, data, frame
