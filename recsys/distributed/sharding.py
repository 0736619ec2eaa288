"""Sharding plans: which worker holds which part of which embedding table.

A ranker's embedding collection (a plain :class:`torchrec.EmbeddingBagCollection`; the fused
optimizer is attached with ``apply_optimizer_in_backward`` before sharding) is sharded by
TorchRec's :class:`~torchrec.distributed.DistributedModelParallel`, the rest of the model
data-parallel (DDP). The plan comes from TorchRec's planner: ``sharding=auto`` lets its cost
model choose per table, any other value forces that TorchRec sharding type on every table. The
planner is given each worker's memory budget, so a plan that does not fit is refused up front
(:class:`ShardingError`) instead of running out of memory later.

TorchRec offers row-wise (and table-row-wise) sharding only on GPUs; its collectives run on
gloo too (``reduce_scatter`` is implemented there), so :class:`ShardableCollectionSharder`
offers them on CPU as well, which is what lets a 2-process CPU run shard one big table by rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import (
    EmbeddingBagCollectionSharder,
    ShardedEmbeddingBagCollection,
)
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation
from torchrec.distributed.planner.types import (
    KernelConfig,
    PlannerError,
    TopologyFactory,
)
from torchrec.distributed.planner.types import TrainerConfig as PlannerTrainerConfig
from torchrec.distributed.types import ShardingPlan, ShardingType
from torchrec.optim import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedTensor

from recsys.modules.embedding import FUSED_OPTIMIZERS, embedding_layout, is_embedding_module

__all__ = [
    "MODEL_PARALLEL",
    "ShardableCollectionSharder",
    "ShardingError",
    "attach_sparse_optimizer",
    "copy_full_state",
    "describe_plan",
    "plan_sharding",
    "shard_model",
    "table_sizes",
]

_GIB = 1024**3
#: the share of a worker's memory budget the planner leaves to everything but the tables
DENSE_RESERVE = 0.15


class ShardingError(ValueError):
    """A sharding plan that cannot be made (does not fit, or is not offered)."""


class ShardableCollectionSharder(EmbeddingBagCollectionSharder):
    """TorchRec's EBC sharder, with row-wise and table-row-wise sharding offered on CPU too."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = list(super().sharding_types(compute_device_type))
        for extra in (ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value):
            if extra not in types:
                types.append(extra)
        return types


def _collections(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [(n, m) for n, m in model.named_modules() if is_embedding_module(m)]
    if not found:
        raise ShardingError("the model has no embedding collection to shard")
    return found


def table_sizes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{table: (rows, dim)}`` of every embedding table of ``model``."""
    out = {}
    for _, module in _collections(model):
        for t in module.embedding_bag_configs():
            out[t.name] = (t.num_embeddings, t.embedding_dim)
    return out


def attach_sparse_optimizer(model: nn.Module, optimizer: Mapping[str, Any]) -> None:
    """Attaches the sparse optimizer (``{"type": "rowwise_adagrad", "lr": ..., ...}``, the
    ``sparse_optimizer`` config) to the embedding parameters, to run inside backward once the
    tables are sharded (TorchRec fuses it into the sharded kernels)."""
    from torch.distributed.optim import _apply_optimizer_in_backward

    opts = dict(optimizer)
    name = opts.pop("type", "rowwise_adagrad")
    if name not in FUSED_OPTIMIZERS:
        raise ShardingError(
            f"sharded embeddings need sparse_optimizer.type in {sorted(FUSED_OPTIMIZERS)}, "
            f"got {name!r}"
        )
    opts.pop("weight_decay_mode", None)
    cls = FUSED_OPTIMIZERS[name]
    params = [p for _, m in _collections(model) for p in m.parameters()]
    kwargs = {k: v for k, v in opts.items() if k in ("lr", "eps", "weight_decay", "momentum")}
    if cls is RowWiseAdagrad or cls is torch.optim.Adagrad:
        kwargs.pop("momentum", None)
    _apply_optimizer_in_backward(cls, params, kwargs)


#: What ``sharding=auto`` lets the planner choose from: every model-parallel type. Replicated
#: (``data_parallel``) tables would not run the fused sparse optimizer of the other tables, so
#: the cost model is not offered them.
MODEL_PARALLEL = tuple(
    t.value
    for t in (
        ShardingType.TABLE_WISE,
        ShardingType.ROW_WISE,
        ShardingType.COLUMN_WISE,
        ShardingType.TABLE_ROW_WISE,
        ShardingType.TABLE_COLUMN_WISE,
    )
)


def _constraints(model: nn.Module, sharding: str) -> dict[str, ParameterConstraints]:
    types = list(MODEL_PARALLEL) if sharding == "auto" else [sharding]
    return {name: ParameterConstraints(sharding_types=types) for name in table_sizes(model)}


def _budget_message(model: nn.Module, world_size: int, budget_gb: float | None) -> str:
    sizes = table_sizes(model)
    total = sum(rows * dim * 4 for rows, dim in sizes.values())
    largest = max(sizes.items(), key=lambda kv: kv[1][0] * kv[1][1])
    budget = f"{budget_gb:g} GiB per worker" if budget_gb is not None else "the machine's memory"
    return (
        f"the embedding tables ({len(sizes)} tables, {total / _GIB:.3g} GiB of fp32 weights "
        f"before optimizer state; largest {largest[0]!r} {largest[1][0]} x {largest[1][1]}) "
        f"do not fit {world_size} worker(s) with {budget}"
    )


def plan_sharding(
    model: nn.Module,
    *,
    world_size: int,
    device: torch.device,
    sharding: str = "auto",
    memory_budget_gb: float | None = None,
    local_world_size: int | None = None,
    process_group: dist.ProcessGroup | None = None,
) -> ShardingPlan:
    """The sharding plan of ``model``'s tables over ``world_size`` workers.

    With a process group the plan is made on rank 0 and broadcast (every rank gets the same);
    without one (a dry run, tests) it is made locally. Raises :class:`ShardingError` when the
    planner finds no plan (tables over the memory budget, a sharding type not offered)."""
    cap = int(memory_budget_gb * _GIB) if memory_budget_gb is not None else None
    kind = device.type
    topology = TopologyFactory.create_topology(
        PlannerTrainerConfig(
            world_size=world_size,
            local_world_size=local_world_size or world_size,
            hbm_cap_bytes=cap if kind == "cuda" else None,
            ddr_cap_bytes=cap if kind != "cuda" else None,
        ),
        kernel_config=KernelConfig(compute_device=kind),
    )
    planner = EmbeddingShardingPlanner(
        topology=topology,
        constraints=_constraints(model, sharding),
        # a fixed share of each worker's budget is kept for the dense part, activations and
        # the input batch (TorchRec's heuristic reservation over-estimates dense tensors)
        storage_reservation=FixedPercentageStorageReservation(DENSE_RESERVE),
    )
    sharders = [ShardableCollectionSharder()]
    try:
        if process_group is not None:
            return planner.collective_plan(model, sharders, process_group)
        return planner.plan(model, sharders)
    except PlannerError as e:
        storage = "insufficient_storage" in str(getattr(e, "error_type", "")).lower() or (
            "storage" in str(e).lower() or "memory" in str(e).lower()
        )
        if storage:
            raise ShardingError(
                _budget_message(model, world_size, memory_budget_gb)
                + "; raise trainer.distributed.memory_budget_gb, add workers, or shrink the "
                "tables (model.embedding.dim, data hashing)"
            ) from None
        raise ShardingError(
            f"no sharding plan with trainer.distributed.sharding={sharding} on {world_size} "
            f"{kind} worker(s): {str(e).splitlines()[0]}"
        ) from None


def describe_plan(plan: ShardingPlan) -> dict[str, dict[str, Any]]:
    """``{table: {"sharding": type, "ranks": [...]}}``: what the run's summary records."""
    out: dict[str, dict[str, Any]] = {}
    for module_plan in plan.plan.values():
        for table, p in module_plan.items():  # type: ignore[union-attr]
            ranks = sorted(set(p.ranks or [])) if p.ranks is not None else []
            out[table] = {"sharding": p.sharding_type, "ranks": ranks}
    return out


def shard_model(model: nn.Module, plan: ShardingPlan, device: torch.device) -> nn.Module:
    """``model`` under :class:`DistributedModelParallel` with ``plan`` (tables sharded, the
    rest replicated under DDP).

    A sharded collection returns its pooled embeddings grouped by the worker that computed
    them, not in the collection's feature order, while the models read the pooled
    ``B x sum(dims)`` block in that order (:func:`recsys.modules.embedding.embedding_layout`);
    a forward hook on every sharded collection puts the features back in order."""
    orders = {
        name: [n for n, _ in embedding_layout(m)]
        for name, m in model.named_modules()
        if is_embedding_module(m)
    }
    sharded = DistributedModelParallel(
        module=model, device=device, plan=plan, sharders=[ShardableCollectionSharder()]
    )
    hooked = 0
    for name, module in sharded.named_modules():
        if isinstance(module, ShardedEmbeddingBagCollection):
            keys = next((k for path, k in orders.items() if name.endswith(path)), None)
            if keys is None:
                raise ShardingError(f"no unsharded collection matches sharded module {name!r}")
            module.register_forward_hook(partial(_in_feature_order, keys=keys))
            hooked += 1
    if hooked != len(orders):
        raise ShardingError(f"{len(orders)} collections but {hooked} sharded ones")
    return sharded


def _in_feature_order(
    module: nn.Module, inputs: Any, output: Any, *, keys: list[str]
) -> KeyedTensor:
    """A sharded collection's output as a ``KeyedTensor`` in the unsharded feature order."""
    kt = output.wait() if hasattr(output, "wait") else output
    if list(kt.keys()) == keys:
        return kt
    lengths = kt.length_per_key()
    parts = dict(zip(kt.keys(), kt.values().split(lengths, dim=1)))
    width = dict(zip(kt.keys(), lengths))
    return KeyedTensor(
        keys=keys,
        length_per_key=[width[k] for k in keys],
        values=torch.cat([parts[k] for k in keys], dim=1),
        key_dim=1,
    )


@torch.no_grad()
def copy_full_state(sharded: nn.Module, full: Mapping[str, torch.Tensor]) -> None:
    """Copies an unsharded ``state_dict`` into the sharded model: each worker's local shard
    of every table gets its rows/columns of the full tensor, the rest is copied whole. Every
    worker starts from the same weights as a one-process run of the same seed."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    target = sharded.state_dict()
    missing = sorted(set(target) - set(full))
    if missing:
        raise KeyError(f"the unsharded state has no {missing[:3]}")
    for key, value in target.items():
        source = full[key]
        if isinstance(value, ShardedTensor):
            for shard in value.local_shards():
                index = tuple(
                    slice(o, o + s)
                    for o, s in zip(shard.metadata.shard_offsets, shard.metadata.shard_sizes)
                )
                shard.tensor.copy_(source[index])
        elif isinstance(value, torch.Tensor):
            value.copy_(source)
    sharded.load_state_dict(target)  # the local shards may be copies of the kernels' weights
