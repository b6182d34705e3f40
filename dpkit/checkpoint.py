"""Checkpoint files of private training: written atomically, read with ``torch.load(weights_only=True)``, and
checked against the model and optimizer they are loaded into before anything is assigned.

A checkpoint is one ``torch.save`` file holding a dict: ``format``, ``model`` (state dict), ``optimizer`` (state
dict), ``torch_rng`` (the global CPU generator's state), ``dpkit`` (the engine state as JSON) and ``extra`` (the
caller's, restricted to what ``weights_only`` loading accepts: None, bools, numbers, strings, tensors, and lists,
tuples and string-keyed dicts of them). A file that cannot be read or does not have this structure gives one
line naming the file and what is wrong; so does a model or optimizer state that does not match the objects it
would be loaded into (checked key by key and shape by shape first, because ``nn.Module.load_state_dict`` copies
the matching tensors before it reports a mismatch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

CHECKPOINT_FORMAT = "dpkit-checkpoint/1"
KEYS = ("format", "model", "optimizer", "torch_rng", "dpkit", "extra")
_PLAIN = (type(None), bool, int, float, str, torch.Tensor)

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose content does not fit what it is loaded into."""


def check_path(name: str, path: object) -> str:
    """A file path (``str`` or ``os.PathLike``; ``~`` expanded)."""
    if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got {path!r}")
    return os.path.expanduser(os.fspath(path))


def check_extra(value: object, name: str = "extra") -> None:
    """``extra`` holds only what ``torch.load(weights_only=True)`` reads back (else the file could not be loaded)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_extra(v, f"{name}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"{name} keys must be strings or integers, got {k!r}")
            check_extra(v, f"{name}[{k!r}]")
        return
    raise TypeError(
        f"{name} must hold only None, bools, numbers, strings, tensors and lists / tuples / dicts of them (what "
        f"torch.load(weights_only=True) reads back), got {type(value).__name__}"
    )


def write(path: str, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename it to ``path``: a crash while writing
    leaves the previous checkpoint as it was, never a truncated one."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write checkpoint {path}: directory {directory} does not exist")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(error).__name__}: {line[:200]}"


def read(path: str) -> dict[str, Any]:
    """The checkpoint dict of ``path``, its structure checked (``engine_state`` parsed from JSON)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a damaged file; the chain would only repeat it
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch.save file?): {_first_line(e)}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path} is not a dpkit checkpoint (format {CHECKPOINT_FORMAT!r}), found {found!r}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)} (a {CHECKPOINT_FORMAT} checkpoint has {KEYS})")
    if not isinstance(data["dpkit"], str):
        raise CheckpointError(f"{path}: dpkit must be the engine state as a JSON string, got {type(data['dpkit'])}")
    try:
        engine_state = json.loads(data["dpkit"])
    except ValueError as e:
        raise CheckpointError(f"{path}: the engine state is not valid JSON ({e})") from None
    return {**data, "dpkit": engine_state}


def check_model_state(model: nn.Module, state: object) -> None:
    """``state`` has exactly ``model``'s state-dict keys, each a tensor of the same shape."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"model state must be a state dict, got {type(state).__name__}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"model state does not fit {type(model).__name__}: missing keys {missing[:5]}, unexpected keys "
            f"{unexpected[:5]}"
        )
    for key, mine in own.items():
        theirs = state[key]
        if not isinstance(theirs, torch.Tensor) or theirs.shape != mine.shape:
            got = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
            raise CheckpointError(f"model state {key!r} has shape {got}, the model's has {tuple(mine.shape)}")


def check_optimizer_state(optimizer: Optimizer, state: object) -> None:
    """``state`` is an optimizer state dict with ``optimizer``'s parameter groups and group sizes."""
    if not isinstance(state, Mapping) or not isinstance(state.get("state"), Mapping):
        raise CheckpointError("optimizer state must be a dict with 'state' and 'param_groups'")
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups
    ):
        raise CheckpointError("optimizer state 'param_groups' must be a list of dicts with a 'params' list")
    saved = [len(g["params"]) for g in groups]
    mine = [len(g["params"]) for g in optimizer.param_groups]
    if saved != mine:
        raise CheckpointError(f"optimizer state has parameter groups of sizes {saved}, the optimizer's are {mine}")
    ids = {i for g in groups for i in g["params"]}
    stray = [k for k in state["state"] if k not in ids]
    if stray:
        raise CheckpointError(f"optimizer state has state for parameters {stray[:5]} that are in no group")
    check_extra = getattr(optimizer, "check_extra_state", None)  # state an optimizer keeps besides torch's
    if callable(check_extra):
        check_extra(state)


def check_rng_state(state: object) -> None:
    """``state`` is a state of the global CPU generator (``torch.get_rng_state()``)."""
    like = torch.get_rng_state()
    if not isinstance(state, torch.Tensor) or state.dtype != like.dtype or state.shape != like.shape:
        got = f"{state.dtype} {tuple(state.shape)}" if isinstance(state, torch.Tensor) else type(state).__name__
        raise CheckpointError(f"torch_rng must be a {like.dtype} tensor of shape {tuple(like.shape)}, got {got}")
