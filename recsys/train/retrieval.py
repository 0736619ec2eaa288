"""Training and encoding for two-tower retrieval (:class:`recsys.models.two_tower.TwoTower`).

Each step scores a batch of ``B`` (user, positive item) pairs against a candidate set made of
the batch's own positives (in-batch negatives), optionally followed by ``n`` items drawn
uniformly from the catalog (mixed negative sampling), ``N = B + n``. Losses:

* ``sampled_softmax``: cross-entropy of each row's positive over the ``N`` candidates, with
  the log-Q correction (item frequencies from a
  :class:`~recsys.retrieval.sampling.StreamingFrequencyEstimator` over the positives; with
  uniform negatives, ``q_j = m_j + n / num_items``) and accidental hits (the row's positive
  appearing again among the candidates) masked to ``-inf``;
* ``bce``: pointwise logistic loss, the positive pair against every other candidate.

Data: a :class:`FeatureTable` holds row-indexed features (``dense`` ``R x D`` and a KJT of
``R`` rows); the *catalog* is a table whose row ``j`` describes item ``j``. Training pairs are a
:class:`TrainingPairs` (one user-side row per event and the event's item id; item features are
looked up in the catalog) or any re-iterable of :class:`RetrievalBatch`.

Models own no optimizer: embeddings get the sparse optimizer (or their fused one), everything
else Adam. Exact-resume checkpoints are not provided here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchrec.optim.fused import FusedOptimizerModule
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from tqdm.auto import tqdm

from recsys.modules.embedding import split_parameters
from recsys.retrieval.sampling import (
    StreamingFrequencyEstimator,
    accidental_hit_mask,
    mixed_log_q,
    pointwise_bce_loss,
    sample_uniform_negatives,
    sampled_softmax_loss,
)
from recsys.train.schedule import ScheduleConfig, lr_factor
from recsys.train.trainer import resolve_device

__all__ = [
    "FeatureTable",
    "RetrievalBatch",
    "RetrievalTrainerConfig",
    "TrainingPairs",
    "encode_items",
    "encode_users",
    "take_rows",
    "train_two_tower",
]

log = logging.getLogger(__name__)

LOSSES = ("sampled_softmax", "bce")
SPARSE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rowwise_adagrad": torch.optim.Adagrad,  # plain tables: torch Adagrad (fused: fbgemm's)
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def take_rows(kjt: KeyedJaggedTensor, rows: torch.Tensor) -> KeyedJaggedTensor:
    """The KJT restricted to ``rows`` (``M`` long indices into its ``R`` rows, repeats allowed).

    Every key keeps its bags; the result has ``M`` rows in the order of ``rows``. Vectorized
    over keys and rows (one gather of the values).
    """
    keys = kjt.keys()
    num_rows = kjt.stride()
    lengths = kjt.lengths().reshape(len(keys), num_rows)  # F x R
    flat = lengths.reshape(-1)
    starts = torch.cumsum(flat, 0) - flat  # F*R start of each bag in values
    key_base = torch.arange(len(keys), device=rows.device).unsqueeze(1) * num_rows
    sel = (key_base + rows.unsqueeze(0)).reshape(-1)  # F*M
    sel_len = flat[sel]
    sel_start = starts[sel]
    out_starts = torch.cumsum(sel_len, 0) - sel_len
    total = int(sel_len.sum())
    idx = torch.repeat_interleave(sel_start - out_starts, sel_len, output_size=total)
    idx = idx + torch.arange(total, device=idx.device)
    weights = kjt.weights_or_none()
    return KeyedJaggedTensor(
        keys=keys,
        values=kjt.values()[idx],
        lengths=sel_len,
        weights=None if weights is None else weights[idx],
    )


@dataclass
class FeatureTable:
    """Row-indexed features of users or items.

    Attributes:
        dense: ``R x D`` float32 (``D`` may be 0).
        sparse: KJT with ``R`` rows (``stride() == R``).
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor

    def __post_init__(self) -> None:
        if self.dense.dim() != 2:
            raise ValueError(f"FeatureTable.dense must be R x D, got {tuple(self.dense.shape)}")
        if self.sparse.stride() != self.dense.shape[0]:
            raise ValueError(
                f"FeatureTable rows differ: dense has {self.dense.shape[0]}, sparse "
                f"{self.sparse.stride()}"
            )

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def take(self, rows: torch.Tensor) -> FeatureTable:
        """The rows ``rows`` (``M`` long indices) as a new table of ``M`` rows."""
        rows = rows.to(self.dense.device)
        return FeatureTable(self.dense[rows], take_rows(self.sparse, rows))

    def to(self, device: torch.device | str) -> FeatureTable:
        return FeatureTable(self.dense.to(device), self.sparse.to(torch.device(device)))


@dataclass
class RetrievalBatch:
    """One training batch of ``B`` (user, positive item) pairs.

    Attributes:
        user_dense: ``B x Du``; user_sparse: user-side KJT of ``B`` rows.
        item_dense: ``B x Di``; item_sparse: item-side KJT of ``B`` rows (the positives).
        item_ids: ``B`` long, the positives' item ids (rows of the catalog).
    """

    user_dense: torch.Tensor
    user_sparse: KeyedJaggedTensor
    item_dense: torch.Tensor
    item_sparse: KeyedJaggedTensor
    item_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    def to(self, device: torch.device) -> RetrievalBatch:
        return RetrievalBatch(
            self.user_dense.to(device),
            self.user_sparse.to(device),
            self.item_dense.to(device),
            self.item_sparse.to(device),
            self.item_ids.to(device),
        )


@dataclass
class TrainingPairs:
    """Training events: ``users`` row ``r`` holds the user-side features at event ``r`` (built
    without leakage, e.g. with :func:`recsys.data.history.build_histories`), ``item_ids[r]``
    (``R`` long) the item engaged with. Batches look the item features up in the catalog."""

    users: FeatureTable
    item_ids: torch.Tensor

    def __post_init__(self) -> None:
        if self.item_ids.shape != (len(self.users),):
            raise ValueError(
                f"TrainingPairs.item_ids must have one id per user row ({len(self.users)}), "
                f"got shape {tuple(self.item_ids.shape)}"
            )

    def __len__(self) -> int:
        return len(self.users)

    def batches(
        self, catalog: FeatureTable, batch_size: int, generator: torch.Generator | None
    ) -> Iterator[RetrievalBatch]:
        """Shuffled (when ``generator`` is given) batches of ``batch_size`` (the last may be
        smaller)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for start in range(0, n, batch_size):
            rows = torch.arange(start, min(start + batch_size, n))
            if order is not None:
                rows = order[rows]
            users = self.users.take(rows)
            ids = self.item_ids[rows]
            items = catalog.take(ids)
            yield RetrievalBatch(users.dense, users.sparse, items.dense, items.sparse, ids)


@dataclass
class RetrievalTrainerConfig:
    """Settings of :func:`train_two_tower`.

    Attributes:
        batch_size: pairs per step (for :class:`TrainingPairs`; ignored for ready batches).
        epochs: passes over the training pairs; ``max_steps`` stops earlier.
        lr: Adam learning rate of the dense parameters (towers, a learned temperature).
        weight_decay: Adam weight decay of the dense parameters (not the temperature).
        sparse_optimizer: for non-fused embeddings: ``{"type": "adagrad" | "rowwise_adagrad" |
            "adam" | "sgd", "lr": ..., ...}`` (``rowwise_adagrad`` means torch Adagrad here);
            fused embeddings carry their own optimizer.
        num_uniform_negatives: extra uniformly sampled negatives per step (shared by all rows).
        loss: ``sampled_softmax`` or ``bce``.
        logq_correction: subtract ``log q`` of each candidate (sampled softmax only).
        remove_accidental_hits: mask candidates equal to the row's positive.
        frequency_alpha: EMA rate of the streaming frequency estimator.
        grad_clip_norm: clip the dense gradients' norm (``None``: no clipping).
        schedule: learning-rate warm-up/decay for every optimizer.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        seed: shuffling and negative sampling.
        progress: tqdm bar (``None``: when stderr is a terminal).
    """

    batch_size: int = 512
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    sparse_optimizer: dict[str, Any] = field(
        default_factory=lambda: {"type": "adagrad", "lr": 0.05}
    )
    num_uniform_negatives: int = 0
    loss: str = "sampled_softmax"
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    frequency_alpha: float = 0.01
    grad_clip_norm: float | None = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    device: str = "cpu"
    seed: int = 0
    progress: bool | None = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("retrieval trainer batch_size and epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.num_uniform_negatives < 0:
            raise ValueError(f"num_uniform_negatives must be >= 0: {self.num_uniform_negatives}")
        kind = self.sparse_optimizer.get("type", "adagrad")
        if kind not in SPARSE_OPTIMIZERS:
            raise ValueError(
                f"sparse_optimizer.type must be one of {sorted(SPARSE_OPTIMIZERS)}, got {kind!r}"
            )
        resolve_device(self.device)


def _optimizers(
    model: nn.Module, config: RetrievalTrainerConfig
) -> tuple[dict[str, torch.optim.Optimizer], list[torch.optim.Optimizer], list[nn.Parameter]]:
    """``(plain optimizers by name, fused optimizers, dense params)``."""
    sparse, dense = split_parameters(model)
    fused_modules = [m for m in model.modules() if isinstance(m, FusedOptimizerModule)]
    fused_ids = {id(p) for m in fused_modules for p in m.parameters()}
    plain_sparse = [p for p in sparse if id(p) not in fused_ids and p.requires_grad]
    dense = [p for p in dense if p.requires_grad]
    temp = getattr(model, "log_temperature", None)
    groups: list[Mapping[str, Any]] = [
        {"params": [p for p in dense if p is not temp], "weight_decay": config.weight_decay}
    ]
    if isinstance(temp, nn.Parameter) and temp.requires_grad:
        groups.append({"params": [temp], "weight_decay": 0.0})
    optimizers: dict[str, torch.optim.Optimizer] = {}
    if dense:
        optimizers["dense"] = torch.optim.Adam(groups, lr=config.lr)
    if plain_sparse:
        opts = dict(config.sparse_optimizer)
        cls = SPARSE_OPTIMIZERS[opts.pop("type", "adagrad")]
        optimizers["sparse"] = cls(plain_sparse, **opts)
    return optimizers, [m.fused_optimizer() for m in fused_modules], dense


def _as_batch(item: RetrievalBatch | tuple) -> RetrievalBatch:
    return item if isinstance(item, RetrievalBatch) else RetrievalBatch(*item)


def train_two_tower(
    model: nn.Module,
    train: TrainingPairs | Iterable[RetrievalBatch],
    config: RetrievalTrainerConfig,
    catalog: FeatureTable,
) -> dict[str, Any]:
    """Trains ``model`` (a ``TwoTower``) in place; returns training statistics.

    Args:
        model: has ``user_vectors``, ``item_vectors`` and ``temperature``.
        train: :class:`TrainingPairs` (batched and shuffled here with ``config.batch_size`` and
            ``config.seed``), or a re-iterable of :class:`RetrievalBatch` (or 5-tuples in its
            field order); ``set_epoch(epoch)`` is called on it when present.
        config: see :class:`RetrievalTrainerConfig`.
        catalog: row ``j`` = item ``j``'s features; ``len(catalog)`` is the number of items.
            Used for uniform negatives and for item features of :class:`TrainingPairs`.

    Returns:
        ``{"steps", "examples", "epochs" (run; the last may be cut by ``max_steps``),
        "epoch_losses" (mean loss per epoch), "final_loss"
        (mean of the last epoch), "temperature", "accidental_hits" (masked entries, summed),
        "wall_seconds", "examples_per_sec"}``.

    Raises:
        ValueError: no batches, or item ids outside the catalog.
        FloatingPointError: a non-finite loss.
    """
    device = resolve_device(config.device)
    model.to(device)
    catalog_dev = catalog.to(device)
    num_items = len(catalog)
    optimizers, fused, dense_params = _optimizers(model, config)
    all_opts = {**optimizers, **{f"fused{i}": o for i, o in enumerate(fused)}}
    base_lrs = {n: [g["lr"] for g in o.param_groups] for n, o in all_opts.items()}
    estimator = StreamingFrequencyEstimator(num_items, config.frequency_alpha, device=device)
    neg_gen = torch.Generator(device=device)
    neg_gen.manual_seed(config.seed + 1)
    n_neg = config.num_uniform_negatives

    if isinstance(train, TrainingPairs):
        steps_per_epoch = -(-len(train) // config.batch_size)
    else:
        steps_per_epoch = len(train) if isinstance(train, Sized) else 0
    total = steps_per_epoch * config.epochs or None
    if config.max_steps:
        total = min(total, config.max_steps) if total else config.max_steps

    step, examples = 0, 0
    hits = torch.zeros((), dtype=torch.long, device=device)
    epoch_losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        if isinstance(train, TrainingPairs):
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            batches: Iterable[Any] = train.batches(catalog, config.batch_size, gen)
        else:
            if hasattr(train, "set_epoch"):
                train.set_epoch(epoch)
            batches = train
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n_batches = 0
        bar = tqdm(
            batches,
            total=steps_per_epoch or None,
            disable=not config.progress,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            mininterval=1.0,
        )
        for raw in bar:
            batch = _as_batch(raw)
            if device.type != "cpu":
                batch = batch.to(device)
            factor = lr_factor(config.schedule, step, total)
            for name, opt in all_opts.items():
                for group, base in zip(opt.param_groups, base_lrs[name]):
                    group["lr"] = base * factor
            for opt in fused:
                opt.step()  # pushes the lr into the fused kernel; updates run in backward
            loss, batch_hits = _step_loss(
                model, batch, catalog_dev, estimator, config, num_items, n_neg, neg_gen
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}")
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(dense_params, config.grad_clip_norm)
            for opt in optimizers.values():
                opt.step()
            loss_sum += loss.detach()
            if batch_hits is not None:
                hits += batch_hits
            n_batches += 1
            step += 1
            examples += len(batch)
            if config.max_steps and step >= config.max_steps:
                break
        bar.close()
        if n_batches == 0:
            raise ValueError("the training data yields no batches")
        epoch_losses.append(float(loss_sum) / n_batches)
        if config.max_steps and step >= config.max_steps:
            break
    wall = time.perf_counter() - start
    return {
        "steps": step,
        "examples": examples,
        "epochs": len(epoch_losses),
        "epoch_losses": epoch_losses,
        "final_loss": epoch_losses[-1],
        "temperature": float(model.temperature.detach()),
        "accidental_hits": int(hits),
        "wall_seconds": wall,
        "examples_per_sec": examples / wall if wall > 0 else 0.0,
    }


def _step_loss(
    model: nn.Module,
    batch: RetrievalBatch,
    catalog: FeatureTable,
    estimator: StreamingFrequencyEstimator,
    config: RetrievalTrainerConfig,
    num_items: int,
    n_neg: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch and the number of masked accidental hits (0-dim, or ``None``)."""
    pos_ids = batch.item_ids.long()
    if pos_ids.numel() and (int(pos_ids.min()) < 0 or int(pos_ids.max()) >= num_items):
        raise ValueError(f"batch item ids must be catalog rows in [0, {num_items})")
    user_vecs = model.user_vectors(batch.user_dense, batch.user_sparse)  # B x D
    item_vecs = model.item_vectors(batch.item_dense, batch.item_sparse)  # B x D
    cand_ids = pos_ids
    if n_neg:
        neg_ids = sample_uniform_negatives(num_items, n_neg, generator=generator)
        neg = catalog.take(neg_ids)
        item_vecs = torch.cat([item_vecs, model.item_vectors(neg.dense, neg.sparse)])
        cand_ids = torch.cat([pos_ids, neg_ids])  # N = B + n
    pos_index = torch.arange(pos_ids.shape[0], device=pos_ids.device)
    hit_mask = accidental_hit_mask(pos_ids, cand_ids) if config.remove_accidental_hits else None
    hits = hit_mask.sum() if hit_mask is not None else None
    temperature = model.temperature
    if config.loss == "bce":
        return pointwise_bce_loss(user_vecs, item_vecs, pos_index, temperature, hit_mask), hits
    log_q = None
    if config.logq_correction:
        estimator.update(pos_ids)
        log_q = mixed_log_q(estimator.log_q(cand_ids), n_neg, num_items)
    loss = sampled_softmax_loss(user_vecs, item_vecs, pos_index, temperature, log_q, hit_mask)
    return loss, hits


@torch.no_grad()
def _encode(
    tower: Any, table: FeatureTable, batch_size: int, device: torch.device | None, dim: int
) -> torch.Tensor:
    chunks = [torch.empty(0, dim, device=device)]
    for start in range(0, len(table), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(table)), device=table.dense.device)
        part = table.take(rows)
        if device is not None:
            part = part.to(device)
        chunks.append(tower(part.dense, part.sparse))
    return torch.cat(chunks)


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


def encode_items(
    model: nn.Module, catalog: FeatureTable, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Item vectors of the whole catalog in eval mode: ``(ids N, vectors N x D)``.

    ``ids`` is ``0..N-1`` (catalog row = item id); vectors are unit-norm, on the model's device.
    """
    was_training = model.training
    model.eval()
    try:
        vecs = _encode(
            model.item_vectors, catalog, batch_size, _model_device(model), model.output_dim
        )
    finally:
        model.train(was_training)
    return torch.arange(len(catalog), device=vecs.device), vecs


def encode_users(model: nn.Module, users: FeatureTable, batch_size: int = 4096) -> torch.Tensor:
    """User vectors of every row of ``users`` in eval mode: ``R x D``, unit-norm."""
    was_training = model.training
    model.eval()
    try:
        return _encode(
            model.user_vectors, users, batch_size, _model_device(model), model.output_dim
        )
    finally:
        model.train(was_training)
