"""Embedding tables for sparse features, built on TorchRec's embedding-bag collections.

Two flavours with the same interface (``forward(kjt: KeyedJaggedTensor) -> KeyedTensor`` of
``B x sum(dims)`` pooled embeddings, ``embedding_bag_configs()`` listing the tables):

* ``fused=False``: :class:`torchrec.EmbeddingBagCollection` (one ``nn.EmbeddingBag`` per table).
  Its parameters get ordinary ``.grad`` tensors; the trainer gives them a (sparse) optimizer.
* ``fused=True``: :class:`torchrec.modules.fused_embedding_modules.FusedEmbeddingBagCollection`
  on fbgemm's table-batched kernels (TBE). The optimizer runs *inside backward*: after
  ``loss.backward()`` the rows are already updated and no ``.grad`` is stored. Its parameters
  must not be given to another optimizer (use :func:`split_parameters` to keep them apart).
  fbgemm requires embedding dims that are multiples of 4. With ``kernel="native"`` the same
  interface is served by :class:`recsys.modules.native_embedding.NativeFusedEmbeddingBagCollection`
  (plain PyTorch ops, CPU only, any dims; faster than fbgemm's CPU backward).

Example::

    spec = FeatureSpec(dense=(), sparse=(SparseFeature("item", 1000),), labels=("click",))
    tables = embedding_tables(spec, EmbeddingConfig(dim=16))
    ebc = build_embeddings(tables, fused=True, optimizer={"type": "rowwise_adagrad", "lr": 0.05})
    kt = ebc(kjt)               # KeyedTensor, kt.values(): B x 16
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import (
    EmbeddingBagCollectionInterface,
    EmbeddingCollectionInterface,
    get_embedding_names_by_table,
)
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad

from recsys.modules.native_embedding import NATIVE_OPTIMIZERS, NativeFusedEmbeddingBagCollection
from recsys.types import FeatureSpec

__all__ = [
    "FUSED_KERNELS",
    "FUSED_OPTIMIZERS",
    "EmbeddingConfig",
    "build_embeddings",
    "check_embeddings",
    "embedding_layout",
    "embedding_tables",
    "is_embedding_module",
    "pooled_width",
    "split_parameters",
]

_INITS = ("uniform", "normal")
_POOLINGS = {"sum": PoolingType.SUM, "mean": PoolingType.MEAN}
_OVERRIDE_KEYS = frozenset({"dim", "pooling", "init_std"})

#: Short names accepted in ``optimizer["type"]`` for fused embeddings.
FUSED_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rowwise_adagrad": RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
_CPU_FUSED = ("rowwise_adagrad", "adagrad", "sgd")
#: Implementations of fused embeddings accepted by ``build_embeddings(kernel=...)``.
FUSED_KERNELS = ("fbgemm", "native")


@dataclass
class EmbeddingConfig:
    """How to build one embedding table per sparse feature.

    Attributes:
        dim: embedding dimension of every table unless overridden.
        per_table: per-feature overrides keyed by *feature* name; each value may hold
            ``"dim"`` (int), ``"pooling"`` (``"sum"`` | ``"mean"``) and ``"init_std"`` (float).
        init: ``"uniform"`` or ``"normal"``. Without ``init_std`` a table of ``n`` rows is drawn
            from ``U(-1/sqrt(n), 1/sqrt(n))`` (TorchRec's default) or ``N(0, 1/n)``; with
            ``init_std = s`` from ``U(-s*sqrt(3), s*sqrt(3))`` or ``N(0, s^2)``.
    """

    dim: int = 16
    per_table: dict[str, dict] = field(default_factory=dict)
    init: str = "uniform"

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"EmbeddingConfig.dim must be a positive int, got {self.dim!r}")
        if self.init not in _INITS:
            raise ValueError(f"EmbeddingConfig.init must be one of {_INITS}, got {self.init!r}")
        if not isinstance(self.per_table, Mapping):
            raise ValueError(
                f"EmbeddingConfig.per_table must map feature names to dicts, got {self.per_table!r}"
            )


def _init_fn(init: str, num_embeddings: int, std: float | None) -> tuple[Any, float, float]:
    """Returns ``(init_fn, weight_init_min, weight_init_max)`` for one table."""
    if init == "uniform":
        bound = math.sqrt(1.0 / num_embeddings) if std is None else std * math.sqrt(3.0)
        return partial(nn.init.uniform_, a=-bound, b=bound), -bound, bound
    sd = math.sqrt(1.0 / num_embeddings) if std is None else std
    # weight_init_min/max only matter to kernels that ignore init_fn; build_embeddings
    # re-applies init_fn to fused tables, so these are a rough equivalent.
    return partial(nn.init.normal_, mean=0.0, std=sd), -sd * math.sqrt(3.0), sd * math.sqrt(3.0)


def embedding_tables(spec: FeatureSpec, config: EmbeddingConfig) -> list[EmbeddingBagConfig]:
    """One table per sparse feature of ``spec``, in ``spec.sparse`` order.

    Table ``t_<feature>`` has ``num_embeddings = feature.cardinality`` and
    ``feature_names = [feature]``. Pooling: a multi-hot feature's own pooling, ``sum`` for
    single-valued features (identical result for one id per row), or the ``per_table``
    override.

    Raises:
        ValueError: ``per_table`` names features that are not in ``spec``, or holds an
            unknown key or a bad value.
    """
    per_table = dict(config.per_table)
    unknown = sorted(set(per_table) - set(spec.sparse_names))
    if unknown:
        raise ValueError(
            f"EmbeddingConfig.per_table names unknown sparse features {unknown}; "
            f"known: {spec.sparse_names}"
        )
    tables: list[EmbeddingBagConfig] = []
    for feature in spec.sparse:
        override = dict(per_table.get(feature.name) or {})
        bad_keys = sorted(set(override) - _OVERRIDE_KEYS)
        if bad_keys:
            raise ValueError(
                f"per_table[{feature.name!r}] has unknown keys {bad_keys}; "
                f"allowed: {sorted(_OVERRIDE_KEYS)}"
            )
        dim = override.get("dim", config.dim)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"per_table[{feature.name!r}]['dim'] must be a positive int: {dim!r}")
        pooling = override.get("pooling", feature.pooling if feature.multi_hot else "sum")
        if pooling not in _POOLINGS:
            raise ValueError(
                f"per_table[{feature.name!r}]['pooling'] must be one of {sorted(_POOLINGS)}, "
                f"got {pooling!r}"
            )
        std = override.get("init_std")
        if std is not None and not (isinstance(std, int | float) and std > 0):
            raise ValueError(f"per_table[{feature.name!r}]['init_std'] must be > 0: {std!r}")
        if feature.cardinality < 1:
            raise ValueError(f"sparse feature {feature.name!r} has cardinality < 1")
        init_fn, lo, hi = _init_fn(config.init, feature.cardinality, std)
        tables.append(
            EmbeddingBagConfig(
                num_embeddings=feature.cardinality,
                embedding_dim=dim,
                name=f"t_{feature.name}",
                feature_names=[feature.name],
                pooling=_POOLINGS[pooling],
                weight_init_min=lo,
                weight_init_max=hi,
                init_fn=init_fn,
            )
        )
    return tables


def _fused_kwargs(optimizer: Mapping[str, Any]) -> tuple[type[torch.optim.Optimizer], dict]:
    """Maps our optimizer dict onto FusedEmbeddingBagCollection's (type, kwargs)."""
    from fbgemm_gpu.tbe.config.optimizer_config import WeightDecayMode

    opts = dict(optimizer)
    name = opts.pop("type", None)
    if name not in FUSED_OPTIMIZERS:
        raise ValueError(
            f"fused embeddings need optimizer['type'] in {sorted(FUSED_OPTIMIZERS)}, got {name!r}"
        )
    if "betas" in opts:  # torch-style Adam betas -> fbgemm's beta1/beta2
        opts["beta1"], opts["beta2"] = (float(b) for b in opts.pop("betas"))
    mode = opts.pop("weight_decay_mode", None)
    if isinstance(mode, str):
        modes = {"none": WeightDecayMode.NONE, "l2": WeightDecayMode.L2}
        modes["decouple"] = WeightDecayMode.DECOUPLE
        if mode.lower() not in modes:
            raise ValueError(f"weight_decay_mode must be one of {sorted(modes)}, got {mode!r}")
        mode = modes[mode.lower()]
    if mode is None and float(opts.get("weight_decay", 0.0)) > 0.0:
        mode = WeightDecayMode.L2  # torch semantics: weight_decay adds wd * w to the gradient
    if mode is not None:
        opts["weight_decay_mode"] = mode
    return FUSED_OPTIMIZERS[name], opts


def build_embeddings(
    tables: list[EmbeddingBagConfig],
    *,
    fused: bool,
    optimizer: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    kernel: str = "fbgemm",
) -> nn.Module:
    """Builds the embedding collection for ``tables``.

    Args:
        tables: from :func:`embedding_tables` (or hand-written).
        fused: ``False`` -> :class:`torchrec.EmbeddingBagCollection`; ``True`` ->
            ``FusedEmbeddingBagCollection`` whose optimizer updates rows inside backward.
        optimizer: for ``fused=True`` only (ignored otherwise): ``{"type": "rowwise_adagrad" |
            "adagrad" | "adam" | "sgd", "lr": ..., "eps": ..., "weight_decay": ..., ...}``;
            other keys go to fbgemm's TBE (``learning_rate``/``lr``, ``eps``, ``beta1``,
            ``beta2``, ``momentum``, ``weight_decay_mode`` ...). ``betas`` is accepted for Adam.
            ``weight_decay > 0`` defaults to L2 mode; fbgemm's CPU kernels ignore it (a
            warning says so).
        device: where the tables live (default CPU).
        kernel: for ``fused=True`` only: ``"fbgemm"`` (TorchRec's ``FusedEmbeddingBagCollection``)
            or ``"native"`` (:class:`NativeFusedEmbeddingBagCollection`: CPU only, any dims,
            ``optimizer["type"]`` in ``rowwise_adagrad`` | ``adagrad`` | ``sgd`` with the same
            update rules; ``weight_decay`` is applied (L2), tables keep their order).

    Returns:
        A module with ``forward(kjt) -> KeyedTensor`` (``values()``: ``B x sum(dims)``) and
        ``embedding_bag_configs()``. For ``fused=True`` the tables are reordered so that tables
        with the same pooling are adjacent: TorchRec's fused collection concatenates outputs
        per pooling group but labels keys in table order, which would mislabel interleaved
        sum/mean tables. Fused weights are (re)initialized with each table's ``init_fn`` so both
        flavours follow the same init.

    Raises:
        ValueError: duplicate table names; fused without an optimizer or with an unknown
            type; fused ``adam`` on CPU (fbgemm has no CPU kernel); fused tables whose dim
            is not a multiple of 4 (an fbgemm requirement); an unknown ``kernel``.
    """
    if kernel not in FUSED_KERNELS:
        raise ValueError(f"kernel must be one of {list(FUSED_KERNELS)}, got {kernel!r}")
    tables = list(tables)
    names = [t.name for t in tables]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate embedding table names: {dupes}")
    dev = torch.device(device) if device is not None else None
    if not fused:
        return EmbeddingBagCollection(tables=tables, device=dev)

    if optimizer is None:
        raise ValueError(
            "fused embeddings need an optimizer dict, e.g. {'type': 'rowwise_adagrad'}"
        )
    if kernel == "native":
        if optimizer.get("type") not in NATIVE_OPTIMIZERS:
            raise ValueError(
                f"kernel='native' needs optimizer['type'] in {list(NATIVE_OPTIMIZERS)}, "
                f"got {optimizer.get('type')!r}"
            )
        return NativeFusedEmbeddingBagCollection(tables, optimizer, device=dev)
    bad_dims = [f"{t.name} (dim {t.embedding_dim})" for t in tables if t.embedding_dim % 4]
    if bad_dims:
        raise ValueError(
            "fused (fbgemm TBE) embeddings need dims that are multiples of 4; offending tables: "
            f"{', '.join(bad_dims)}. Use fused=False for these dims."
        )
    opt_type, opt_kwargs = _fused_kwargs(optimizer)
    on_cpu = dev is None or dev.type == "cpu"
    if opt_type is torch.optim.Adam and on_cpu:
        raise ValueError(
            "fused 'adam' is only available on CUDA (fbgemm's CPU kernels support "
            f"{sorted(_CPU_FUSED)}); use one of those on CPU"
        )
    if on_cpu and float(opt_kwargs.get("weight_decay", 0.0)) > 0.0:
        warnings.warn(
            "fbgemm's CPU kernels ignore weight_decay for fused embeddings (measured with "
            "fbgemm-gpu-cpu 1.8.0); the embedding rows get no weight decay",
            stacklevel=2,
        )
    groups: dict[tuple, list[EmbeddingBagConfig]] = {}
    for t in tables:
        groups.setdefault((t.pooling, t.data_type), []).append(t)
    ordered = [t for group in groups.values() for t in group]
    module = FusedEmbeddingBagCollection(
        tables=ordered, optimizer_type=opt_type, optimizer_kwargs=opt_kwargs, device=dev
    )
    if module.device.type != "meta":
        with torch.no_grad():
            for t in ordered:
                if t.init_fn is not None:
                    t.init_fn(module.embedding_bags[t.name].weight)
    return module


def is_embedding_module(m: nn.Module) -> bool:
    """True for TorchRec embedding collections (plain, fused, pooled or sequence)."""
    return isinstance(m, EmbeddingBagCollectionInterface | EmbeddingCollectionInterface)


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Splits ``model``'s parameters into ``(sparse, dense)``.

    ``sparse`` are the parameters owned by embedding collections (:func:`is_embedding_module`),
    ``dense`` all others; each parameter appears once. Parameters of fused collections are
    updated inside backward by their own optimizer (``module.fused_optimizer()``) and never
    get a ``.grad``: do not hand them to another optimizer.
    """
    sparse: list[nn.Parameter] = []
    seen: set[int] = set()
    for m in model.modules():
        if is_embedding_module(m):
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    sparse.append(p)
    dense: list[nn.Parameter] = []
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            dense.append(p)
    return sparse, dense


def embedding_layout(embeddings: nn.Module) -> list[tuple[str, int]]:
    """``[(embedding name, dim)]`` in the order of the output ``KeyedTensor``.

    The embedding name is the feature name (``feature@table`` when a feature feeds several
    tables), as in TorchRec.
    """
    configs = _configs(embeddings)
    names = get_embedding_names_by_table(configs)
    return [(n, t.embedding_dim) for t, ns in zip(configs, names) for n in ns]


def pooled_width(configs: Sequence[EmbeddingBagConfig]) -> int:
    """Width of the pooled output of these tables: ``sum(dims)`` over every (table, feature)."""
    return sum(t.embedding_dim * len(t.feature_names) for t in configs)


def _configs(embeddings: nn.Module) -> list[EmbeddingBagConfig]:
    getter = getattr(embeddings, "embedding_bag_configs", None)
    if getter is None:
        raise TypeError(
            f"embeddings must be an embedding-bag collection with embedding_bag_configs(), "
            f"got {type(embeddings).__name__}"
        )
    return list(getter())


def check_embeddings(
    spec: FeatureSpec, embeddings: nn.Module, *, model: str
) -> list[EmbeddingBagConfig]:
    """Checks that ``embeddings`` covers exactly the sparse features of ``spec``.

    Returns the table configs. Raises ``ValueError`` naming the missing or extra features.
    """
    configs = _configs(embeddings)
    covered = [f for t in configs for f in t.feature_names]
    missing = sorted(set(spec.sparse_names) - set(covered))
    extra = sorted(set(covered) - set(spec.sparse_names))
    if missing or extra:
        raise ValueError(
            f"{model}: embedding tables do not match the feature spec: "
            f"features without a table {missing}, table features not in the spec {extra}"
        )
    return configs
