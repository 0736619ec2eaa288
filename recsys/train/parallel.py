"""The settings of a multi-process training run: ``trainer.distributed``.

Only settings live here (plain dataclasses the trainer config holds); :mod:`recsys.distributed`
runs them: ``workers`` processes under Ray Train, the embedding tables sharded by TorchRec's
``DistributedModelParallel`` with a plan from TorchRec's planner, the dense part data-parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SHARDING_TYPES", "DistributedConfig"]

#: ``trainer.distributed.sharding``: ``auto`` lets TorchRec's planner choose per table by its
#: cost model among the model-parallel types; the others force one TorchRec sharding type on
#: every table. TorchRec's ``data_parallel`` is not offered: replicated tables do not run the
#: fused sparse optimizer, so their rows would not train like a one-process run's.
SHARDING_TYPES = (
    "auto",
    "table_wise",
    "row_wise",
    "column_wise",
    "table_row_wise",
    "table_column_wise",
)
BACKENDS = ("auto", "gloo", "nccl")


@dataclass
class DistributedConfig:
    """How many processes train and how they split the work.

    Attributes:
        workers: ``0`` trains in this process (no Ray); ``N >= 1`` runs the same trainer in
            ``N`` Ray Train worker processes.
        address: an existing Ray cluster (``host:port`` or ``ray://host:port``); ``None``
            starts a local Ray instance for the run and stops it after.
        backend: the process group: ``auto`` is nccl on GPUs and gloo on CPUs.
        sharding: see :data:`SHARDING_TYPES`.
        memory_budget_gb: memory per worker the planner may give to embedding tables and their
            optimizer state (device memory on GPUs, host memory on CPUs); ``None``: the
            machine's.
        cpus_per_worker: Ray CPUs each worker reserves (also its torch thread count).
        gpus_per_worker: ``0`` on CPU; ``1`` puts each worker on its own GPU.
        max_failures: how many times Ray restarts the worker group after a worker dies; the
            restarted group resumes from the last checkpoint.
        start_timeout_s: how long to wait for the workers to start before failing.
        failure_drill: ``"rank:step"`` kills that worker (SIGKILL) when it reaches ``step`` in
            its first attempt, to rehearse recovery (``max_failures >= 1``, checkpoints on).
    """

    workers: int = 0
    address: str | None = None
    backend: str = "auto"
    sharding: str = "auto"
    memory_budget_gb: float | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 0
    start_timeout_s: float = 120.0
    failure_drill: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"trainer.distributed.workers must be >= 0, got {self.workers}")
        if self.sharding not in SHARDING_TYPES:
            raise ValueError(
                f"trainer.distributed.sharding must be one of {list(SHARDING_TYPES)}, "
                f"got {self.sharding!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"trainer.distributed.backend must be one of {list(BACKENDS)}, got {self.backend!r}"
            )
        if self.memory_budget_gb is not None and self.memory_budget_gb <= 0:
            raise ValueError("trainer.distributed.memory_budget_gb must be > 0 or null")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ValueError(
                "trainer.distributed.cpus_per_worker must be > 0 and gpus_per_worker >= 0"
            )
        if self.max_failures < 0 or self.start_timeout_s <= 0:
            raise ValueError(
                "trainer.distributed.max_failures must be >= 0 and start_timeout_s > 0"
            )
        self.drill()

    @property
    def enabled(self) -> bool:
        return self.workers > 0

    def drill(self) -> tuple[int, int] | None:
        """``failure_drill`` as ``(rank, step)``, or ``None``."""
        if self.failure_drill is None:
            return None
        parts = str(self.failure_drill).split(":")
        try:
            rank, step = (int(p) for p in parts)
        except ValueError:
            rank = step = -1
        if len(parts) != 2 or rank < 0 or step < 1 or (self.workers and rank >= self.workers):
            raise ValueError(
                "trainer.distributed.failure_drill must be 'rank:step' with 0 <= rank < workers "
                f"and step >= 1, got {self.failure_drill!r}"
            )
        return rank, step
