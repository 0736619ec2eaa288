"""Pooled embedding tables whose optimizer runs inside backward, in plain PyTorch ops (CPU).

:class:`NativeFusedEmbeddingBagCollection` is a drop-in for TorchRec's
``FusedEmbeddingBagCollection`` on CPU: same ``forward(kjt) -> KeyedTensor``, same parameter
and ``state_dict`` names (``embedding_bags.<table>.weight``), same fused-optimizer interface
(``fused_optimizer()`` with ``param_groups[0]["lr"]``, a no-op ``step()``, ``state_dict()``
with ``<table>.weight.momentum_1``), and the same update rules as fbgemm's ``EXACT_SGD``,
``EXACT_ADAGRAD`` and ``EXACT_ROWWISE_ADAGRAD``. Row-wise Adagrad, for each row ``r`` looked
up in the batch (``D`` = dim)::

    g     = sum of the gradients of all lookups of r   (+ weight_decay * w[r])
    m[r] += sum(g ** 2) / D
    w[r] -= lr * g / (sqrt(m[r]) + eps)

How (per group of tables that share a dim, stored as one ``rows x D`` weight, like TBE):

* forward: global row ids (``id + row offset of the table``) are laid out batch-major so that
  one ``embedding_bag`` call writes the ``B x (F_g * D)`` output directly (sum or mean mode;
  a ``1 / len`` per-sample weight where a group mixes the two; empty bags give zeros).
* backward: the lookups are sorted by row (int32 keys), the gradient of each distinct row is
  one more ``embedding_bag`` over the incoming ``grad`` (duplicates summed, ``1 / len``
  applied, no per-lookup gradient materialized), then the update above touches only those
  rows (``index_select`` / ``index_copy_`` / ``index_add_``). ``.grad`` is never populated.

Example::

    tables = [EmbeddingBagConfig(name="t_item", num_embeddings=1000, embedding_dim=16,
                                 feature_names=["item"])]
    ebc = NativeFusedEmbeddingBagCollection(tables, {"type": "rowwise_adagrad", "lr": 0.05})
    kt = ebc(kjt)                     # kt.values(): B x 16
    kt.values().sum().backward()      # rows of "item" in kjt are updated here
    ebc.fused_optimizer().param_groups[0]["lr"] = 0.01   # next backward uses it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import (
    EmbeddingBagCollectionInterface,
    get_embedding_names_by_table,
)
from torchrec.optim.fused import FusedOptimizer, FusedOptimizerModule
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

__all__ = ["NATIVE_OPTIMIZERS", "NativeFusedEmbeddingBagCollection", "NativeFusedOptimizer"]

#: Update rules supported in ``optimizer["type"]``.
NATIVE_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd")
_OPTIMIZER_KEYS = frozenset(
    {"type", "lr", "learning_rate", "eps", "weight_decay", "weight_decay_mode"}
)
# fbgemm TBE's defaults, so that an optimizer dict means the same for both kernels.
_DEFAULT_LR, _DEFAULT_EPS = 0.01, 1.0e-8
_INT32_MAX = 2**31 - 1


class NativeFusedOptimizer(FusedOptimizer):
    """The optimizer of a :class:`NativeFusedEmbeddingBagCollection`.

    Updates happen inside backward, reading ``param_groups[0]["lr"]`` at that moment, so
    ``step()`` and ``zero_grad()`` do nothing. ``state`` maps each table's weight to
    ``{"<table>.weight.momentum_1": tensor}`` (``rows`` for row-wise Adagrad, ``rows x D`` for
    Adagrad, nothing for SGD) as fbgemm's fused optimizer does; ``state_dict()`` returns these
    live tensors (views into the per-dim state) and ``load_state_dict`` copies into them.
    """

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        state: Mapping[torch.Tensor, Mapping[str, torch.Tensor]],
        lr: float,
    ) -> None:
        super().__init__(dict(params), dict(state), [{"params": list(params.values()), "lr": lr}])

    @property
    def lr(self) -> float:
        return float(self.param_groups[0]["lr"])  # type: ignore[index]

    def step(self, closure: Any = None) -> None:
        """No-op: rows are updated in backward with the current ``param_groups[0]["lr"]``."""
        return None

    def zero_grad(self, set_to_none: bool = False) -> None:
        """No-op: fused parameters never hold a ``.grad``."""
        return None


class _Rule:
    """Hyper-parameters of the update, parsed from an optimizer dict."""

    def __init__(self, optimizer: Mapping[str, Any]) -> None:
        opts = dict(optimizer)
        unknown = sorted(set(opts) - _OPTIMIZER_KEYS)
        if unknown:
            raise ValueError(
                f"native fused embeddings: unknown optimizer keys {unknown}; "
                f"allowed: {sorted(_OPTIMIZER_KEYS)}"
            )
        kind = opts.get("type")
        if kind not in NATIVE_OPTIMIZERS:
            raise ValueError(
                f"native fused embeddings need optimizer['type'] in {list(NATIVE_OPTIMIZERS)}, "
                f"got {kind!r}"
            )
        mode = opts.get("weight_decay_mode")
        if mode is not None and str(getattr(mode, "name", mode)).lower() not in ("none", "l2"):
            raise ValueError(
                f"native fused embeddings support weight_decay_mode 'l2' or 'none', got {mode!r}"
            )
        self.kind: str = kind
        self.lr = float(opts.get("lr", opts.get("learning_rate", _DEFAULT_LR)))
        self.eps = float(opts.get("eps", _DEFAULT_EPS))
        wd = float(opts.get("weight_decay", 0.0))
        no_decay = mode is not None and str(getattr(mode, "name", mode)).lower() == "none"
        self.weight_decay = 0.0 if no_decay else wd
        if self.lr < 0 or self.eps < 0 or self.weight_decay < 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0, got {optimizer!r}")


class _DimGroup:
    """Tables of one dim in one ``rows x D`` weight (plus optimizer state), CPU float32.

    ``first`` / ``count`` locate the group's features in the collection's grouped feature
    order; ``row_offsets`` (``F_g``) is each feature's first row in ``weight`` and ``rows``
    (``F_g``) its table size; ``mean`` (``F_g`` bool) marks mean-pooled features.
    """

    def __init__(
        self,
        dim: int,
        tables: Sequence[EmbeddingBagConfig],
        first: int,
        rule: _Rule,
        optimizer: NativeFusedOptimizer | None = None,
    ) -> None:
        self.dim, self.rule, self.first = dim, rule, first
        total = sum(t.num_embeddings for t in tables)
        self.weight = torch.empty(total, dim)
        # The autograd input: an alias of ``weight`` that requires grad, so that backward runs.
        self.handle = self.weight.detach().requires_grad_(True)
        if rule.kind == "rowwise_adagrad":
            self.momentum: torch.Tensor | None = torch.zeros(total)
        elif rule.kind == "adagrad":
            self.momentum = torch.zeros(total, dim)
        else:
            self.momentum = None
        self.table_rows: list[tuple[int, int]] = []
        offsets, sizes, mean = [], [], []
        start = 0
        for t in tables:
            self.table_rows.append((start, t.num_embeddings))
            for _ in t.feature_names:
                offsets.append(start)
                sizes.append(t.num_embeddings)
                mean.append(t.pooling == PoolingType.MEAN)
            start += t.num_embeddings
        self.count = len(offsets)
        self.row_offsets = torch.tensor(offsets, dtype=torch.int64)
        self.rows = torch.tensor(sizes, dtype=torch.int64)
        self.mean = torch.tensor(mean) if any(mean) else None
        self.all_mean = all(mean)
        self.int32_keys = total <= _INT32_MAX
        self.optimizer = optimizer
        self._layout_batch = -1
        self._layout: tuple[torch.Tensor, ...] = ()

    def layout(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-batch-size constants (cached), for ``num_bags = F_g * batch``.

        Returns ``(arange(num_bags + 1), km_of_bm, bag_rows, bag_mean)``: ``km_of_bm[b * F_g +
        f] = f * batch + b`` (key-major index of each batch-major bag), ``bag_rows`` (``num_bags
        x 2``) the feature's ``[row offset, table size]`` per batch-major bag, ``bag_mean``
        (``num_bags`` bool) whether the bag is mean-pooled.
        """
        if batch != self._layout_batch:
            n = self.count * batch
            km_of_bm = torch.arange(n).view(self.count, batch).t().reshape(-1)
            bag_rows = torch.stack([self.row_offsets, self.rows], 1).repeat(batch, 1)
            mean = self.mean if self.mean is not None else torch.zeros(self.count, dtype=torch.bool)
            self._layout = (torch.arange(n + 1), km_of_bm, bag_rows, mean.repeat(batch))
            self._layout_batch = batch
        return self._layout  # type: ignore[return-value]

    # -- backward: aggregate by row, then update ------------------------------------------
    @torch.no_grad()
    def apply_gradient(self, lookups: _Lookups, grad: torch.Tensor) -> None:
        """Applies the update for one batch: ``lookups`` as in forward, ``grad`` the
        ``num_bags x D`` gradient of the pooled output."""
        ids = lookups.ids
        n = ids.numel()
        if n == 0:
            return
        keys = ids.to(torch.int32) if self.int32_keys else ids
        sorted_keys, order = torch.sort(keys)
        first = torch.ones(n, dtype=torch.bool)
        torch.ne(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
        starts = first.nonzero().squeeze(1)
        rows = sorted_keys.index_select(0, starts).long()
        bag_ids, bag_scale = lookups.bag_ids, lookups.bag_scale
        source = order if bag_ids is None else bag_ids.index_select(0, order)
        weights = None if bag_scale is None else bag_scale.index_select(0, source)
        # Row gradients: U x D, the sum over each row's lookups (a segment sum in row order).
        row_grad = F.embedding_bag(
            source, grad.contiguous(), starts, mode="sum", per_sample_weights=weights
        )
        self._update(rows, row_grad)

    def _update(self, rows: torch.Tensor, g: torch.Tensor) -> None:
        """``w[rows] -= step(g)`` for ``rows`` (``U`` distinct int64) and ``g`` (``U x D``)."""
        rule = self.rule
        lr = self.optimizer.lr if self.optimizer is not None else rule.lr
        if rule.weight_decay:
            g.add_(self.weight.index_select(0, rows), alpha=rule.weight_decay)
        if rule.kind == "rowwise_adagrad":
            assert self.momentum is not None
            m = self.momentum.index_select(0, rows)
            m.add_(torch.linalg.vector_norm(g, dim=1).square_().div_(self.dim))
            self.momentum.index_copy_(0, rows, m)
            # multiplier = -lr / (sqrt(m) + eps), divided (not reciprocal-multiplied) as fbgemm.
            mult = torch.full_like(m, -lr).div_(m.sqrt_().add_(self.rule.eps))
            g.mul_(mult.unsqueeze(1))
        elif rule.kind == "adagrad":
            assert self.momentum is not None
            m = self.momentum.index_select(0, rows)
            m.addcmul_(g, g)
            self.momentum.index_copy_(0, rows, m)
            g.mul_(-lr).div_(m.sqrt_().add_(self.rule.eps))
        else:
            g.mul_(-lr)
        # rows are distinct: index_add_ (alpha 1, its fast path) is a plain scattered add.
        self.weight.index_add_(0, rows, g)


class _Lookups(NamedTuple):
    """One batch of one dim group, in batch-major bag order (bag ``b * F_g + f``).

    ``ids``: ``L`` int64 rows of the group weight; ``offsets``: ``num_bags + 1`` int64;
    ``bag_ids``: ``L`` int64 bag of each id (``None``: id ``i`` is bag ``i``); ``bag_scale``:
    ``num_bags`` float32 factor of each bag's ids (``1 / len`` for mean pooling, else 1;
    ``None``: all 1); ``mode``: ``"sum"``, ``"mean"`` (every bag) or ``"weighted"``
    (``bag_scale`` per id).
    """

    ids: torch.Tensor
    offsets: torch.Tensor
    bag_ids: torch.Tensor | None = None
    bag_scale: torch.Tensor | None = None
    mode: str = "sum"


class _FusedLookup(torch.autograd.Function):
    """Pooled lookup whose backward applies the group's optimizer and returns no gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, handle: torch.Tensor, group: _DimGroup, lookups: _Lookups
    ) -> torch.Tensor:
        """``handle``: the group weight (``rows x D``, requires grad); returns the pooled
        ``num_bags x D`` embeddings."""
        ctx.group, ctx.lookups = group, lookups
        mode, weights = lookups.mode, None
        if mode == "weighted":
            assert lookups.bag_ids is not None and lookups.bag_scale is not None
            mode, weights = "sum", lookups.bag_scale.index_select(0, lookups.bag_ids)
        return F.embedding_bag(
            lookups.ids,
            group.weight,
            lookups.offsets,
            mode=mode,
            per_sample_weights=weights,
            include_last_offset=True,
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:
        ctx.group.apply_gradient(ctx.lookups, grad)
        return None, None, None


class NativeFusedEmbeddingBagCollection(EmbeddingBagCollectionInterface, FusedOptimizerModule):
    """Embedding-bag collection with the optimizer fused into backward, in PyTorch ops (CPU).

    Args:
        tables: TorchRec table configs (float32; ``SUM`` or ``MEAN`` pooling; any dims). Tables
            are initialized with their ``init_fn`` or ``U(weight_init_min, weight_init_max)``.
        optimizer: ``{"type": "rowwise_adagrad" | "adagrad" | "sgd", "lr": 0.01, "eps": 1e-8,
            "weight_decay": 0.0}`` (``learning_rate`` is an alias of ``lr``; defaults are
            fbgemm's). ``weight_decay`` adds ``wd * w`` to the gradient of the rows looked
            up in the batch (fbgemm's L2 mode); ``weight_decay_mode`` may be ``"l2"`` or
            ``"none"``.
        device: ``None`` or CPU.

    Shapes: ``forward(kjt)`` with ``F`` keys (at least the tables' features, any order) and
    stride ``B`` returns a ``KeyedTensor`` with keys = embedding names in table order (the
    feature name, ``feature@table`` when a feature feeds several tables), ``values()``
    ``B x sum(dims)``, ``length_per_key`` = dims.

    Parameters are ``embedding_bags.<table>.weight`` (``rows x D`` views into the per-dim
    storage), as in ``EmbeddingBagCollection``, so state dicts load across the two; they never
    get a ``.grad`` and must not be given to another optimizer.

    Raises:
        ValueError: no tables, duplicate names, non-float32 tables, a device other than CPU,
            a bad optimizer dict; at forward: missing features, weighted or variable-batch
            KJTs, or ids outside ``[0, num_embeddings)``.
    """

    def __init__(
        self,
        tables: list[EmbeddingBagConfig],
        optimizer: Mapping[str, Any],
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(
                f"NativeFusedEmbeddingBagCollection runs on CPU only, got device {device}; "
                "use kernel='fbgemm' on accelerators"
            )
        tables = list(tables)
        if not tables:
            raise ValueError("NativeFusedEmbeddingBagCollection needs at least one table")
        names = [t.name for t in tables]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate embedding table names: {dupes}")
        bad = [t.name for t in tables if t.data_type != DataType.FP32]
        if bad:
            raise ValueError(f"native fused embeddings support float32 tables only: {bad}")
        bad = [t.name for t in tables if t.pooling not in (PoolingType.SUM, PoolingType.MEAN)]
        if bad:
            raise ValueError(f"native fused embeddings support SUM and MEAN pooling only: {bad}")
        self._rule = _Rule(optimizer)
        self._tables = tables
        self._embedding_names = [n for ns in get_embedding_names_by_table(tables) for n in ns]
        self._length_per_key = [t.embedding_dim for t in tables for _ in t.feature_names]

        by_dim: dict[int, list[EmbeddingBagConfig]] = {}
        for t in tables:
            by_dim.setdefault(t.embedding_dim, []).append(t)
        self._groups: list[_DimGroup] = []
        self._grouped_features: list[str] = []  # KJT key of each lookup slot, grouped by dim
        slot_of: dict[tuple[str, str], int] = {}
        for dim, group_tables in by_dim.items():
            self._groups.append(
                _DimGroup(dim, group_tables, len(self._grouped_features), self._rule)
            )
            for t in group_tables:
                for f in t.feature_names:
                    slot_of[(t.name, f)] = len(self._grouped_features)
                    self._grouped_features.append(f)
        # Output column order: slots in table order.
        self._output_slots = [slot_of[(t.name, f)] for t in tables for f in t.feature_names]
        self._in_order = self._output_slots == sorted(self._output_slots)

        self.embedding_bags = nn.ModuleDict()
        params: dict[str, torch.Tensor] = {}
        state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for group, group_tables in zip(self._groups, by_dim.values()):
            for t, (start, rows) in zip(group_tables, group.table_rows):
                view = group.weight[start : start + rows]
                with torch.no_grad():
                    if t.init_fn is not None:
                        t.init_fn(view)
                    else:
                        view.uniform_(t.get_weight_init_min(), t.get_weight_init_max())
                holder = nn.Module()
                holder.register_parameter("weight", nn.Parameter(view))
                self.embedding_bags[t.name] = holder
                param = holder.weight
                params[f"{t.name}.weight"] = param
                if group.momentum is not None:
                    momentum = group.momentum[start : start + rows]
                    state[param] = {f"{t.name}.weight.momentum_1": momentum}
        self._optimizer = NativeFusedOptimizer(params, state, self._rule.lr)
        for group in self._groups:
            group.optimizer = self._optimizer
        self._group_tables = list(by_dim.values())

    # -- TorchRec interfaces ----------------------------------------------------------------
    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        return self._tables

    def is_weighted(self) -> bool:
        return False

    def fused_optimizer(self) -> NativeFusedOptimizer:  # type: ignore[override]
        return self._optimizer

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _get_name(self) -> str:
        return "NativeFusedEmbeddingBagCollection"

    # -- forward ----------------------------------------------------------------------------
    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """``features``: KJT ``[F x B x L]`` -> ``KeyedTensor`` ``B x sum(dims)``."""
        kjt = self._aligned(features)
        self._check_storage()
        batch = kjt.stride()
        values, lengths = kjt.values(), kjt.lengths()
        value_starts = [0]
        if len(self._groups) > 1:
            for n in kjt.length_per_key():
                value_starts.append(value_starts[-1] + n)
        outs = []
        for g in self._groups:
            if len(self._groups) == 1:
                vals, lens = values, lengths
            else:
                lo, hi = g.first, g.first + g.count
                vals = values[value_starts[lo] : value_starts[hi]]
                lens = lengths[lo * batch : hi * batch]
            lookups = self._prepare(g, vals, lens, batch)
            out = _FusedLookup.apply(g.handle, g, lookups)
            outs.append(out.view(batch, g.count * g.dim))
        return KeyedTensor(
            keys=self._embedding_names,
            values=self._merge(outs),
            length_per_key=self._length_per_key,
        )

    def _aligned(self, kjt: KeyedJaggedTensor) -> KeyedJaggedTensor:
        """``kjt`` with exactly the grouped features as keys, in grouped order."""
        if kjt.weights_or_none() is not None:
            raise ValueError("NativeFusedEmbeddingBagCollection does not support weighted KJTs")
        if kjt.variable_stride_per_key():
            raise ValueError("NativeFusedEmbeddingBagCollection needs one batch size per key")
        keys = kjt.keys()
        if keys == self._grouped_features:
            return kjt
        index = {k: i for i, k in enumerate(keys)}
        missing = sorted({f for f in self._grouped_features if f not in index})
        if missing:
            raise ValueError(f"the KJT lacks features {missing}; it has {keys}")
        return kjt.permute([index[f] for f in self._grouped_features])

    def _check_storage(self) -> None:
        for group, tables in zip(self._groups, self._group_tables):
            param = self.embedding_bags[tables[0].name].weight
            if param.data_ptr() != group.weight.data_ptr() or param.dtype != torch.float32:
                raise RuntimeError(
                    "the embedding parameters no longer alias the fused storage (moved, cast or "
                    "loaded with assign=True); NativeFusedEmbeddingBagCollection is CPU float32"
                )

    def _prepare(
        self, g: _DimGroup, vals: torch.Tensor, lens: torch.Tensor, batch: int
    ) -> _Lookups:
        """Group rows of ``vals`` (``L``, key-major as in the KJT) in batch-major bag order."""
        num_bags = g.count * batch
        arange, km_of_bm, bag_rows, bag_mean = g.layout(batch)
        vals = vals.long()
        n = vals.numel()
        # n ids in n bags, none empty: one id per bag, only the bags are reordered.
        if n == num_bags and (n == 0 or int(lens.min()) >= 1):
            grid = vals.view(g.count, batch)
            if n:
                low, high = torch.aminmax(grid, dim=1)
                if bool((low < 0).any() | (high >= g.rows).any()):
                    bad = int(((grid < 0) | (grid >= g.rows.unsqueeze(1))).nonzero()[0, 0])
                    self._raise_bad_id(g, bad // batch, int(vals[bad]))
            ids = (grid + g.row_offsets.unsqueeze(1)).t().reshape(-1)
            return _Lookups(ids, arange)
        lens = lens.long()
        lens_bm = lens.view(g.count, batch).t().reshape(-1)
        offsets = torch.zeros(num_bags + 1, dtype=torch.int64)
        torch.cumsum(lens_bm, 0, out=offsets[1:])
        starts_km = torch.zeros(num_bags, dtype=torch.int64)
        torch.cumsum(lens[:-1], 0, out=starts_km[1:])
        bag_ids = torch.repeat_interleave(lens_bm, output_size=n)
        # Key-major position of each batch-major id: its index minus its bag's shift.
        shift = offsets[:-1] - starts_km.index_select(0, km_of_bm)
        source = torch.arange(n).sub_(shift.index_select(0, bag_ids))
        vals_bm = vals.index_select(0, source)
        rows = bag_rows.index_select(0, bag_ids)
        if bool(((vals_bm < 0) | (vals_bm >= rows[:, 1])).any()):
            bad = int(((vals_bm < 0) | (vals_bm >= rows[:, 1])).nonzero()[0, 0])
            self._raise_bad_id(g, int(bag_ids[bad]) % g.count, int(vals_bm[bad]))
        ids = vals_bm.add_(rows[:, 0])
        if g.mean is None:
            return _Lookups(ids, offsets, bag_ids)
        inv_len = lens_bm.clamp(min=1).to(torch.float32).reciprocal_()
        if g.all_mean:
            return _Lookups(ids, offsets, bag_ids, inv_len, "mean")
        scale = torch.where(bag_mean, inv_len, torch.ones_like(inv_len))
        return _Lookups(ids, offsets, bag_ids, scale, "weighted")

    def _raise_bad_id(self, g: _DimGroup, slot: int, value: int) -> None:
        """Raises for id ``value`` of the group's feature ``slot``."""
        feature = self._grouped_features[g.first + slot]
        raise ValueError(
            f"feature {feature!r}: id {value} is outside [0, {int(g.rows[slot])}) "
            "(the size of its table)"
        )

    def _merge(self, outs: list[torch.Tensor]) -> torch.Tensor:
        """Concatenates per-group outputs (``B x F_g*D_g``) into table order."""
        if len(outs) == 1:
            return outs[0]
        if self._in_order:
            return torch.cat(outs, dim=1)
        chunks = [c for g, o in zip(self._groups, outs) for c in o.split(g.dim, dim=1)]
        return torch.cat([chunks[s] for s in self._output_slots], dim=1)
