"""Splitting one dataset among agents (for simulations, examples and benchmarks)."""

from __future__ import annotations

import torch

from dpkit.accountants.validation import check_count

__all__ = ["split_among_agents"]


def split_among_agents(
    inputs: torch.Tensor, targets: torch.Tensor, num_agents: int, *, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A uniformly random partition of the samples into ``num_agents`` parts whose sizes differ by at most one
    (``torch.Generator().manual_seed(seed)``)."""
    num_agents = check_count("num_agents", num_agents, minimum=1)
    n = inputs.shape[0]
    if targets.shape[0] != n:
        raise ValueError(f"targets must have as many rows as inputs ({n}), got {targets.shape[0]}")
    if n < num_agents:
        raise ValueError(f"num_agents must be at most the number of samples ({n}), got {num_agents}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return [(inputs[idx], targets[idx]) for idx in order.tensor_split(num_agents)]
