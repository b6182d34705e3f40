"""What a distributed run's state dict (:class:`~dpkit.distributed.CornDSGD`, :class:`~dpkit.distributed.Diff2`)
says about the run that saved it, and the checks a resumed run makes on it before it assigns anything."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dpkit.accountants.validation import check_count


def run_identity(config: Any, local_agents: Sequence[int], seed: int | None) -> dict[str, Any]:
    """The state dict's ``config`` (a dataclass, as a dict), ``local_agents`` and ``seed``."""
    return {"config": dataclasses.asdict(config), "local_agents": list(local_agents), "seed": seed}


def check_same_run(
    state: Mapping[str, Any], config: Any, local_agents: Sequence[int], seed: int | None, members: str
) -> None:
    """Refuse a state saved by a run with another configuration, other local ``members`` (agents, nodes) or
    another seed."""
    if state.get("config") != dataclasses.asdict(config):
        raise ValueError(f"state config {state.get('config')} does not match this run's {config}")
    if list(state.get("local_agents", [])) != list(local_agents) or state.get("seed") != seed:
        raise ValueError(f"state was saved by a run with other {members} or another seed")


def checked_round(state: Mapping[str, Any], rounds: int) -> int:
    """``state['round']``, a count in ``[0, rounds]``."""
    rnd = check_count("state['round']", state["round"])
    if rnd > rounds:
        raise ValueError(f"state['round'] must be in [0, {rounds}], got {rnd}")
    return rnd


def check_state_tensor(state: Mapping[str, Any], key: str, like: torch.Tensor) -> None:
    """Refuse ``state[key]`` unless it is a tensor of ``like``'s shape."""
    value = state[key]
    if not torch.is_tensor(value) or value.shape != like.shape:
        raise ValueError(f"state[{key!r}] must be a tensor of shape {tuple(like.shape)}")
