"""Mixture-of-experts layers for multi-task ranking: MMoE and PLE.

Both map one shared input ``B x I`` to one representation per task ``B x T x H`` (``H`` is the
last size of ``expert_mlp``); the caller puts a tower on each task slice.

* MMoE (Ma et al., KDD 2018): ``E`` shared experts, one softmax gate per task over them.
* PLE (Tang et al., RecSys 2020, "progressive layered extraction"): per level, ``K`` experts per
  task and ``S`` shared experts; task ``t``'s gate mixes its own ``K`` plus the ``S`` shared
  experts, a shared gate mixes all ``T K + S`` experts and feeds the shared experts of the next
  level. Levels are stacked; the last one has no shared output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recsys.modules.mlp import MLP

__all__ = ["PLE", "MMoE", "PLELevel"]


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _mix(weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """``weights``: ``B x N`` (rows sum to 1), ``experts``: ``B x N x H`` -> ``B x H``."""
    return torch.bmm(weights.unsqueeze(1), experts).squeeze(1)


class MMoE(nn.Module):
    """Multi-gate mixture of experts.

    Args:
        in_features: ``I``.
        num_tasks: ``T >= 1``.
        num_experts: ``E >= 1`` shared experts, each ``MLP(I, expert_mlp)``.
        expert_mlp: expert layer sizes (non-empty); ``H = expert_mlp[-1]``.
        activation, dropout: passed to the expert MLPs.

    Shapes: ``forward(x: B x I) -> B x T x H``; ``gate_weights(x) -> B x T x E`` (softmax).
    """

    def __init__(
        self,
        in_features: int,
        num_tasks: int,
        num_experts: int,
        expert_mlp: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_count("num_tasks", num_tasks, 1)
        _check_count("num_experts", num_experts, 1)
        if not list(expert_mlp):
            raise ValueError("MMoE needs a non-empty expert_mlp")
        self.experts = nn.ModuleList(
            MLP(in_features, expert_mlp, activation, dropout) for _ in range(num_experts)
        )
        self.gate = nn.Linear(in_features, num_tasks * num_experts)  # all task gates at once
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.out_features = self.experts[0].out_features

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x I`` -> ``B x T x E``; each ``[b, t]`` row sums to 1."""
        logits = self.gate(x).view(x.shape[0], self.num_tasks, self.num_experts)
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x I`` -> ``B x T x H``."""
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # B x E x H
        return torch.bmm(self.gate_weights(x), experts)


class PLELevel(nn.Module):
    """One PLE extraction level.

    Args:
        in_features: ``I`` of every input.
        num_tasks: ``T``.
        num_shared_experts: ``S >= 0``.
        num_task_experts: ``K >= 0`` per task (``K + S >= 1``).
        expert_mlp: expert sizes; ``H = expert_mlp[-1]``.
        shared_output: compute the shared gate's output (all levels but the last).

    Shapes: ``forward(inputs)`` takes ``T + 1`` tensors ``B x I`` (task inputs, then the shared
    input) and returns ``T`` (+1 with ``shared_output``) tensors ``B x H``.
    """

    def __init__(
        self,
        in_features: int,
        num_tasks: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_mlp: Sequence[int],
        shared_output: bool,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_count("num_tasks", num_tasks, 1)
        _check_count("num_shared_experts", num_shared_experts, 0)
        _check_count("num_task_experts", num_task_experts, 0)
        if num_shared_experts + num_task_experts < 1:
            raise ValueError("PLE needs num_shared_experts + num_task_experts >= 1")
        if not list(expert_mlp):
            raise ValueError("PLE needs a non-empty expert_mlp")

        def expert() -> MLP:
            return MLP(in_features, expert_mlp, activation, dropout)

        self.task_experts = nn.ModuleList(
            nn.ModuleList(expert() for _ in range(num_task_experts)) for _ in range(num_tasks)
        )
        self.shared_experts = nn.ModuleList(expert() for _ in range(num_shared_experts))
        self.task_gates = nn.ModuleList(
            nn.Linear(in_features, num_task_experts + num_shared_experts) for _ in range(num_tasks)
        )
        self.shared_gate = (
            nn.Linear(in_features, num_tasks * num_task_experts + num_shared_experts)
            if shared_output
            else None
        )
        self.num_tasks = num_tasks
        self.out_features = int(list(expert_mlp)[-1])

    def _gates(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        gates = [torch.softmax(g(inputs[t]), dim=-1) for t, g in enumerate(self.task_gates)]
        if self.shared_gate is not None:
            gates.append(torch.softmax(self.shared_gate(inputs[self.num_tasks]), dim=-1))
        return gates

    def gate_weights(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per task ``B x (K + S)``, then (with shared output) ``B x (T K + S)``; rows sum to 1."""
        self._check(inputs)
        return self._gates(inputs)

    def _check(self, inputs: Sequence[torch.Tensor]) -> None:
        if len(inputs) != self.num_tasks + 1:
            raise ValueError(f"PLELevel expects {self.num_tasks + 1} inputs, got {len(inputs)}")

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``T + 1`` inputs ``B x I`` -> ``T`` (or ``T + 1``) outputs ``B x H``."""
        self._check(inputs)
        shared = [e(inputs[self.num_tasks]) for e in self.shared_experts]
        own = [[e(inputs[t]) for e in experts] for t, experts in enumerate(self.task_experts)]
        gates = self._gates(inputs)
        outputs = [
            _mix(gates[t], torch.stack(own[t] + shared, dim=1)) for t in range(self.num_tasks)
        ]
        if self.shared_gate is not None:
            everything = [h for task in own for h in task] + shared
            outputs.append(_mix(gates[-1], torch.stack(everything, dim=1)))
        return outputs


class PLE(nn.Module):
    """Progressive layered extraction: ``num_levels`` stacked :class:`PLELevel` s.

    Level 1 reads ``x`` for every task and the shared branch; level ``l + 1`` reads level
    ``l``'s per-task and shared outputs (width ``H``).

    Shapes: ``forward(x: B x I) -> B x T x H``.
    """

    def __init__(
        self,
        in_features: int,
        num_tasks: int,
        num_levels: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_mlp: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_count("ple_levels", num_levels, 1)
        levels = []
        width = in_features
        for level in range(num_levels):
            levels.append(
                PLELevel(
                    width,
                    num_tasks,
                    num_shared_experts,
                    num_task_experts,
                    expert_mlp,
                    shared_output=level < num_levels - 1,
                    activation=activation,
                    dropout=dropout,
                )
            )
            width = levels[-1].out_features
        self.levels = nn.ModuleList(levels)
        self.num_tasks = num_tasks
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x I`` -> ``B x T x H``."""
        inputs: list[torch.Tensor] = [x] * (self.num_tasks + 1)
        for level in self.levels:
            inputs = level(inputs)
        return torch.stack(inputs, dim=1)
