"""The FAISS index wrapper: recall floors per kind, id mapping, persistence, input checks."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS loads OpenMP

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.retrieval import index_gpu
from recsys.retrieval.index import (
    KINDS,
    IndexConfig,
    IndexFormatError,
    VectorIndex,
)
from recsys.retrieval.index_report import evaluate_index, recall_vs_exact

N, DIM, Q, K = 20_000, 64, 200, 10
RECALL_FLOOR = {"flat": 1.0, "ivf_flat": 0.95, "hnsw": 0.95, "ivf_pq": 0.95, "ivf_rq": 0.95}


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """``n x dim`` unit vectors around ``clusters`` centres (anisotropic noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scales = (np.arange(1, dim + 1) ** -0.5).astype(np.float32)
    scales *= 0.7 / np.sqrt((scales**2).sum())
    x = rng.standard_normal((n, dim)).astype(np.float32) * scales
    x += centres[rng.integers(0, clusters, n)]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k positions and scores by inner product, in float64."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    x = clustered(N + Q, DIM, clusters=1200, seed=0)  # ~17 per cluster: not trivial
    rng = np.random.default_rng(1)
    ids = rng.choice(10**12, N, replace=False).astype(np.int64)  # non-contiguous, unsorted
    items, queries = x[:N], x[N:]
    top, scores = brute_force(items, queries, K)
    return {"items": items, "queries": queries, "ids": ids, "exact": ids[top], "scores": scores}


@pytest.fixture(scope="module")
def built(data: dict[str, np.ndarray]) -> dict[str, VectorIndex]:
    return {
        kind: VectorIndex.build(data["items"], data["ids"], IndexConfig(kind=kind))
        for kind in KINDS
    }


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_reaches_its_recall_floor_and_reports(
    kind: str, data: dict, built: dict[str, VectorIndex]
) -> None:
    report = evaluate_index(built[kind], data["exact"], data["queries"], k=K)
    assert report.recall_at_k >= RECALL_FLOOR[kind], report
    assert report.kind == kind and report.k == K and report.ntotal == N
    assert report.memory_bytes > data["ids"].nbytes and report.qps > 0
    assert report.build_seconds > 0 and report.threads >= 1
    assert report.params["kind"] == kind and report.params["device"] == "cpu"
    # An exact VectorIndex works as the reference too.
    again = evaluate_index(built[kind], built["flat"], data["queries"], k=K)
    assert again.recall_at_k == pytest.approx(report.recall_at_k, abs=0.01)


@pytest.mark.parametrize(
    "config", [IndexConfig(kind="ivf_flat", nprobe=4), IndexConfig(kind="ivf_rq", refine="none")]
)
def test_weaker_settings_miss_the_floor(config: IndexConfig, data: dict) -> None:
    """The floors above are not free: few probes, or RQ codes without refine, fall short."""
    index = VectorIndex.build(data["items"], data["ids"], config)
    assert evaluate_index(index, data["exact"], data["queries"], k=K).recall_at_k < 0.95


def test_flat_is_exact_and_does_not_normalize(data: dict, built: dict[str, VectorIndex]) -> None:
    scores, ids = built["flat"].search(data["queries"], K)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (Q, K)
    np.testing.assert_array_equal(ids, data["exact"])
    np.testing.assert_allclose(scores, data["scores"], rtol=1e-5, atol=1e-5)
    # Vectors of very different norms: scores are raw inner products, not cosines.
    norms = np.random.default_rng(2).uniform(0.1, 10.0, (2000, 1)).astype(np.float32)
    items = data["items"][:2000] * norms
    scaled = VectorIndex.build(items, None, IndexConfig(kind="flat"))
    s, i = scaled.search(data["queries"][:50], 5)
    top, exact = brute_force(items, data["queries"][:50], 5)
    np.testing.assert_array_equal(i, top)
    np.testing.assert_allclose(s, exact, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_keeps_ids_and_results(
    kind: str, data: dict, built: dict[str, VectorIndex], tmp_path: Path
) -> None:
    index = built[kind]
    path = index.save(tmp_path / "idx")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "ids.npy", "index.faiss"]
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary folders left
    loaded = VectorIndex.load(path)
    np.testing.assert_array_equal(loaded.ids, data["ids"])
    assert loaded.config == index.config and loaded.params == index.params
    assert loaded.build_seconds == index.build_seconds
    a_scores, a_ids = index.search(data["queries"], K)
    b_scores, b_ids = loaded.search(data["queries"], K)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_scores, b_scores)
    assert set(np.unique(b_ids)) <= set(data["ids"].tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_batched_search_equals_unbatched(kind: str, data: dict, built: dict) -> None:
    whole = built[kind].search(data["queries"], K, batch_size=10_000)
    batched = built[kind].search(data["queries"], K, batch_size=7)
    np.testing.assert_array_equal(whole[1], batched[1])
    np.testing.assert_array_equal(whole[0], batched[0])


@pytest.mark.parametrize("kind", ["flat", "ivf_flat", "hnsw", "ivf_rq"])
def test_add_after_build(kind: str, data: dict) -> None:
    items, ids = data["items"][:6000], data["ids"][:6000]
    index = VectorIndex.build(items[:4000], ids[:4000], IndexConfig(kind=kind))
    index.add(items[4000:], ids[4000:])
    assert index.ntotal == 6000 and len(index) == 6000
    np.testing.assert_array_equal(index.ids, ids)
    _, found = index.search(items[4000:4100], 1)  # an added vector is its own best match
    assert (found[:, 0] == ids[4000:4100]).mean() >= 0.98
    with pytest.raises(ValueError, match="already in the index"):
        index.add(items[:2], ids[:2])
    with pytest.raises(ValueError, match="dimension"):
        index.add(items[:2, :10], np.array([1, 2]))
    assert index.ntotal == 6000  # rejected input leaves the index unchanged
    index.add(items[:3])  # no ids: continue after the largest
    np.testing.assert_array_equal(index.ids[-3:], ids.max() + 1 + np.arange(3))


def test_k_beyond_ntotal_and_unfilled_slots() -> None:
    x = clustered(300, 16, clusters=4, seed=3)
    small = VectorIndex.build(x[:5], np.array([50, 40, 30, 20, 10]), IndexConfig(kind="flat"))
    scores, ids = small.search(x[:3], 10)
    assert ids.shape == (3, 5) and set(ids[0]) == {10, 20, 30, 40, 50}
    assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 0).all()
    # IVF probing 1 of 8 lists cannot fill 100 slots: the rest are (-inf, -1).
    ivf = VectorIndex.build(x, None, IndexConfig(kind="ivf_flat", nlist=8, nprobe=1))
    scores, ids = ivf.search(x[:4], 100)
    empty = ids == -1
    assert empty.any() and (~empty).any()
    assert np.isneginf(scores[empty]).all() and np.isfinite(scores[~empty]).all()


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq", "ivf_rq"])
def test_tiny_ivf_with_more_probes_than_lists(kind: str) -> None:
    """300 vectors -> 7 lists, fewer than the default 64 probes: every list is scanned."""
    x = clustered(300, 16, clusters=300, seed=4)
    index = VectorIndex.build(x, None, IndexConfig(kind=kind, pq_m=8))
    assert index.nlist is not None and index.nlist < index.config.nprobe
    _, ids = index.search(x, 5)
    assert (ids >= 0).all()
    assert (ids[:, 0] == np.arange(300)).mean() >= 0.95  # unit vectors: each its own best


def test_bad_inputs_give_clear_errors(data: dict, built: dict[str, VectorIndex]) -> None:
    index, q = built["flat"], data["queries"]
    with pytest.raises(ValueError, match="dimension 32, the index has dimension 64"):
        index.search(q[:, :32], K)
    with pytest.raises(TypeError, match="floating point"):
        index.search(q.astype(np.int32), K)
    with pytest.raises(ValueError, match="row 3 has a non-finite"):
        bad = q.copy()
        bad[3, 5] = np.nan
        index.search(bad, K)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="is empty"):
        index.search(q[:0], K)
    with pytest.raises(ValueError, match="single vector"):
        index.search(q[0], K)
    with pytest.raises(ValueError, match="batch_size"):
        index.search(q, K, batch_size=0)
    # float64 (and float16) queries are cast to float32.
    np.testing.assert_array_equal(index.search(q.astype(np.float64), K)[1], data["exact"])
    items = data["items"][:100]
    with pytest.raises(ValueError, match="is empty"):
        VectorIndex.build(items[:0])
    with pytest.raises(ValueError, match="unique"):
        VectorIndex.build(items[:3], np.array([1, 2, 1]))
    with pytest.raises(ValueError, match=">= 0"):
        VectorIndex.build(items[:3], np.array([1, -1, 2]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        VectorIndex.build(items[:3], np.array([1, 2]))
    with pytest.raises(TypeError, match="integers"):
        VectorIndex.build(items[:3], np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="needs at least 256 training vectors"):
        VectorIndex.build(items, None, IndexConfig(kind="ivf_pq"))
    with pytest.raises(ValueError, match="must divide the dimension"):
        VectorIndex.build(data["items"][:2000], None, IndexConfig(kind="ivf_pq", pq_m=7))


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        IndexConfig(kind="annoy")
    with pytest.raises(ValueError, match="nprobe must be an integer >= 1"):
        IndexConfig(kind="ivf_flat", nprobe=0)
    with pytest.raises(ValueError, match="exact and takes no refine"):
        IndexConfig(kind="flat", refine="fp16")
    with pytest.raises(ValueError, match="only 'ip'"):
        IndexConfig(metric="l2")
    with pytest.raises(ValueError, match="unknown IndexConfig key 'nprob'"):
        IndexConfig.from_dict({"kind": "ivf_flat", "nprob": 8})
    cfg = IndexConfig(kind="ivf_pq", name="pq-fast", nprobe=16)
    assert IndexConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.resolved_refine == "fp16" and IndexConfig(kind="hnsw").resolved_refine == "none"
    assert cfg.label == "pq-fast" and IndexConfig(kind="hnsw").label == "hnsw"


def test_load_errors_name_the_problem(data: dict, built: dict, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved vector index"):
        VectorIndex.load(tmp_path / "missing")
    small = VectorIndex.build(data["items"][:50], data["ids"][:50], IndexConfig(kind="hnsw"))
    good = small.save(tmp_path / "good")

    def broken(name: str, edit) -> Path:
        folder = tmp_path / name
        small.save(folder)
        edit(folder)
        return folder

    lacks = broken("lacks", lambda f: (f / "ids.npy").unlink())
    with pytest.raises(FileNotFoundError, match=r"lacks ids\.npy"):
        VectorIndex.load(lacks)
    garbage = broken("garbage", lambda f: (f / "index.faiss").write_bytes(b"not a faiss index"))
    with pytest.raises(IndexFormatError, match=r"index\.faiss"):
        VectorIndex.load(garbage)
    bad_json = broken("json", lambda f: (f / "config.json").write_text("{oops"))
    with pytest.raises(IndexFormatError, match=r"config\.json"):
        VectorIndex.load(bad_json)
    short = broken("short", lambda f: np.save(f / "ids.npy", np.arange(3, dtype=np.int64)))
    with pytest.raises(IndexFormatError, match=r"holds 50 vectors .* 3 ids"):
        VectorIndex.load(short)
    assert VectorIndex.load(good).ntotal == 50


def test_save_replaces_an_index_but_not_other_folders(data: dict, tmp_path: Path) -> None:
    a = VectorIndex.build(data["items"][:40], None, IndexConfig(kind="flat"))
    b = VectorIndex.build(data["items"][:60], None, IndexConfig(kind="flat"))
    a.save(tmp_path / "idx")
    b.save(tmp_path / "idx")
    assert VectorIndex.load(tmp_path / "idx").ntotal == 60
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a saved index"):
        a.save(other)
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "notes"]


def test_recall_vs_exact_counts_overlap() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    found = np.array([[4, 3, 9, 8], [6, 5, -1, -1]])
    # row 0: 2 of 4; row 1: both of the 2 that exist.
    assert recall_vs_exact(found, exact, 4) == pytest.approx((0.5 + 1.0) / 2)
    assert recall_vs_exact(found[:, :2], exact[:, :2], 2) == pytest.approx((0.0 + 1.0) / 2)


def test_device_choice_without_gpu() -> None:
    if index_gpu.gpu_count() > 0:
        pytest.skip("a GPU is present")
    assert index_gpu.resolve_use_gpu("auto", "flat", "none") is False
    with pytest.raises(RuntimeError, match="sees no GPU"):
        VectorIndex.build(np.eye(4, dtype=np.float32), None, IndexConfig(use_gpu=True))
    assert not index_gpu.supports_gpu("hnsw", "none")
    assert not index_gpu.supports_gpu("ivf_pq", "fp16")
