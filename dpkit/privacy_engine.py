"""``PrivacyEngine``: make an ordinary PyTorch training loop differentially private (DP-SGD).

>>> engine = PrivacyEngine(accountant="pld")                                     # doctest: +SKIP
>>> model, optimizer, loader = engine.make_private(
...     module=model, optimizer=optimizer, data_loader=loader,
...     target_epsilon=3.0, target_delta=1e-5, epochs=10, max_grad_norm=1.0, max_physical_batch_size=128)
>>> for x, y in loader:                                                           # unchanged loop
...     optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
>>> engine.get_epsilon(1e-5)

The model is not wrapped (same object, same type, same methods); the optimizer is a :class:`DPOptimizer`
sharing the original's parameter groups and state; the loader draws exact Poisson batches (:mod:`dpkit.data`).
With a ``target_epsilon`` the noise is calibrated for ``epochs`` passes and the step that would exceed the
target raises ``BudgetExceededError`` before changing anything. Checkpoints restore model, optimizer, ledger,
sampler and noise positions and the global torch RNG: an interrupted and resumed run ends with bit-identical
parameters; a checkpoint is checked completely before anything is assigned (:mod:`dpkit.checkpoint`).

Reliability (:mod:`dpkit.optimizer` has the details): an example whose gradient is NaN or inf contributes exactly
zero to its step (``NonFiniteGradientWarning``, counted in ``nonfinite_examples``); the wrapped optimizer refuses
``step()``; a step after a forward pass that no backward pass reached is refused; inputs must be batched; every
argument is checked before anything changes.

Data-parallel training: pass a model wrapped in ``torch.nn.parallel.DistributedDataParallel`` (every rank calls
``make_private`` with the same settings and the full dataset's loader, whose ``batch_size`` is the global expected
batch size); each rank trains on its part of the global Poisson batch, the clipped sums are all-reduced and the
noise is added once (:mod:`dpkit.distributed.data_parallel`). Epsilon is that of the single-process run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from dpkit import checkpoint
from dpkit.accountants import DpEvent, PrivacyAccountant, PrivacyBudget, available_accountants, create_accountant
from dpkit.accountants.validation import check_count, check_delta
from dpkit.adaptive_clipping import AdaptiveClipping
from dpkit.checkpoint import CHECKPOINT_FORMAT, CheckpointError, check_extra, check_path
from dpkit.data import PoissonDataLoader
from dpkit.error_feedback import NoiseInflation
from dpkit.grad_sample import available_engines, create_engine
from dpkit.grad_sample.engine import GradSampleEngine
from dpkit.mechanisms.matrix_factorization import Strategy
from dpkit.mf_optimizer import CorrelatedNoise, MFOptimizer
from dpkit.noise import GaussianNoise
from dpkit.optimizer import DPOptimizer
from dpkit.seeding import check_seed, new_seed
from dpkit.training_plan import EngineSettings, TrainingPlan, plan_training

if TYPE_CHECKING:
    from dpkit.distributed.data_parallel import DataParallel


class PrivacyEngine:
    """Private training with DP-SGD, tracked and capped by an accountant (``"pld"`` or ``"rdp"``).

    ``secure_rng=True`` draws the noise and the Poisson batches from the OS CSPRNG (slower; runs cannot be
    resumed bit-exactly; see :mod:`dpkit.noise`). ``seed`` fixes batches and noise (default: a fresh random
    seed, stored in checkpoints). ``grad_sample_engine`` names the per-sample gradient engine
    (:mod:`dpkit.grad_sample`): ``"auto"`` (default) picks the fastest exact one for the model (book-keeping
    when it applies, else the generic torch.func engine); ``"bookkeeping"`` or ``"functorch"`` force one. The
    engine in use is ``engine.engine.name`` after ``make_private``.
    """

    def __init__(
        self,
        accountant: str = "pld",
        *,
        secure_rng: bool = False,
        seed: int | None = None,
        grad_sample_engine: str = "auto",
    ):
        if accountant not in available_accountants():
            raise ValueError(f"accountant must be one of {available_accountants()}, got {accountant!r}")
        if not isinstance(secure_rng, bool):
            raise TypeError(f"secure_rng must be True or False, got {secure_rng!r}")
        seed = check_seed("seed", seed, optional=True)
        if secure_rng and seed is not None:
            raise ValueError("seed must be None with secure_rng=True (the OS CSPRNG cannot be seeded)")
        if grad_sample_engine not in available_engines():
            raise ValueError(f"grad_sample_engine must be one of {available_engines()}, got {grad_sample_engine!r}")
        self.accountant_name = accountant
        self.secure_rng = secure_rng
        self._seed_given = seed is not None
        self.seed = None if secure_rng else (new_seed() if seed is None else seed)
        self.grad_sample_engine = grad_sample_engine
        self._accountant: PrivacyAccountant = create_accountant(accountant)
        self.budget: PrivacyBudget | None = None
        self.engine: GradSampleEngine | None = None
        self.optimizer: DPOptimizer | None = None
        self.data_loader: DataLoader | None = None
        self.noise = GaussianNoise(self.seed, secure=secure_rng)
        self.parallel: DataParallel | None = None  # the process group of a data-parallel run

    # ----------------------------------------------------------------- ledger
    @property
    def accountant(self) -> PrivacyAccountant:
        return self.budget.accountant if self.budget is not None else self._accountant

    def check_step(self, event: DpEvent) -> None:
        if self.budget is not None and not self.budget.can_spend(event):
            self.budget.spend(event)  # raises BudgetExceededError with the epsilon it would reach

    def record_step(self, event: DpEvent) -> None:
        if self.budget is not None:
            self.budget.spend(event)
        else:
            self._accountant.compose(event)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (infinite if any step ran without noise)."""
        return self.accountant.get_epsilon(check_delta("delta", delta))

    @property
    def steps(self) -> int:
        return 0 if self.optimizer is None else self.optimizer.steps_taken

    @property
    def nonfinite_examples(self) -> int:
        """Examples left out of the steps taken because their gradient was NaN or inf (see :mod:`dpkit.optimizer`)."""
        return 0 if self.optimizer is None else self.optimizer.nonfinite_examples

    @property
    def noise_multiplier(self) -> float | None:
        return None if self.optimizer is None else self.optimizer.noise_multiplier

    @property
    def sample_rate(self) -> float | None:
        return None if self.optimizer is None else self.optimizer.sample_rate

    # ----------------------------------------------------------------- make_private
    def make_private(
        self,
        module: nn.Module,
        optimizer: Optimizer,
        data_loader: torch.utils.data.DataLoader,
        *,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        target_delta: float | None = None,
        epochs: float | None = None,
        max_grad_norm: float | Sequence[float] | str | AdaptiveClipping,
        max_physical_batch_size: int | None = None,
        clipping: str = "flat",
        loss_reduction: str = "mean",
        poisson_sampling: bool = True,
        error_feedback_clip: float | None = None,
        error_feedback_noise_inflation: NoiseInflation | None = None,
        noise: Strategy | CorrelatedNoise | None = None,
    ) -> tuple[nn.Module, DPOptimizer, torch.utils.data.DataLoader]:
        """Return ``(module, optimizer, data_loader)`` ready for a private training loop (see the module
        docs).

        Give either ``noise_multiplier`` (>= 0; 0 is not private and warns) or ``target_epsilon`` with
        ``target_delta`` and ``epochs`` (the noise is calibrated and the budget enforced).

        Variants of DP-SGD: ``max_grad_norm="adaptive"`` (or an :class:`~dpkit.adaptive_clipping.AdaptiveClipping`)
        clips to a privately estimated quantile of the per-example norms (:mod:`dpkit.adaptive_clipping`);
        ``error_feedback_clip=C2`` (>= ``max_grad_norm``) turns the optimizer into DiceSGD, whose noise is inflated
        by ``error_feedback_noise_inflation(C1, C2)`` (default :func:`~dpkit.error_feedback.dice_noise_inflation`)
        and whose guarantee is its authors' claim (:mod:`dpkit.error_feedback`).

        ``noise``: None is DP-SGD; a matrix-factorization strategy (or a :class:`~dpkit.mf_optimizer.CorrelatedNoise`
        naming its participation) trains with correlated noise (:mod:`dpkit.mf_optimizer`): the loader then draws
        the matching participation (fixed epochs by default) and the run has exactly the strategy's n steps.

        ``module`` may be wrapped in ``DistributedDataParallel`` (every rank calls ``make_private`` alike; see the
        module docs); the wrapper is returned, and the seed of rank 0 is used by every rank. Data-parallel training
        runs DP-SGD (not yet the variants above or correlated noise).
        """
        if self.optimizer is not None:
            raise RuntimeError("make_private was already called on this PrivacyEngine; use one engine per model")
        plan = plan_training(
            module,
            optimizer,
            data_loader,
            EngineSettings(
                self._accountant,
                self.accountant_name,
                self.grad_sample_engine,
                self.seed,
                self._seed_given,
                self.secure_rng,
            ),
            noise_multiplier=noise_multiplier,
            target_epsilon=target_epsilon,
            target_delta=target_delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
            max_physical_batch_size=max_physical_batch_size,
            clipping=clipping,
            loss_reduction=loss_reduction,
            poisson_sampling=poisson_sampling,
            error_feedback_clip=error_feedback_clip,
            error_feedback_noise_inflation=error_feedback_noise_inflation,
            noise=noise,
        )
        # Everything is checked: from here on the module, the optimizer and this engine change.
        return module, self._apply(plan, optimizer), plan.sampling.loader

    def _apply(self, plan: TrainingPlan, optimizer: Optimizer) -> DPOptimizer:
        """Attach the per-sample gradient engine, wrap the optimizer, and take the plan's loader, budget, seed."""
        engine = create_engine(
            self.grad_sample_engine,
            plan.module,
            plan.checked.params,
            loss_reduction=plan.config["loss_reduction"],
            max_physical_batch_size=plan.checked.max_physical_batch_size,
        )
        engine.attach()  # validates the module, with a clear error naming incompatible submodules
        if isinstance(plan.sampling.loader, PoissonDataLoader):  # each step clips over the examples it drew
            engine.follow_loader(plan.sampling.loader)
        self.seed = self.noise.seed = plan.seed  # rank 0's seed in a data-parallel run
        if plan.budget is not None:
            self.budget = plan.budget
        self.engine = engine
        if plan.parallel is not None:
            plan.parallel.attach()
            self.parallel = plan.parallel
        dp_kwargs: dict[str, Any] = {
            "engine": engine,
            "clipping": plan.checked.policy,
            "noise_multiplier": plan.noise_multiplier,
            "expected_batch_size": plan.sampling.expected_batch_size,
            "sample_rate": plan.sampling.sample_rate,
            "noise": self.noise,
            "ledger": self,
        }
        if plan.correlated is not None:
            self.optimizer = MFOptimizer(optimizer, run=plan.correlated, **dp_kwargs)
        else:
            optimizer_cls = plan.variant.cls if plan.parallel is None else plan.parallel.optimizer
            self.optimizer = optimizer_cls(optimizer, **dp_kwargs, **plan.variant.kwargs)
        self.data_loader = plan.sampling.loader
        self._config: dict[str, Any] = dict(plan.config)
        return self.optimizer

    def detach(self) -> None:
        """Give the module back its ordinary forward and the wrapped optimizer its own ``step`` (the DP optimizer
        stops working)."""
        if self.engine is not None:
            self.engine.detach()
        if self.optimizer is not None:
            self.optimizer.release()
        if self.parallel is not None:
            self.parallel.detach()

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: configuration, steps, ledger (with budget), sampler and noise seeds."""
        if self.optimizer is None:
            raise RuntimeError("call make_private before saving the engine state")
        sampler: Any = getattr(self.data_loader, "batch_sampler", None)
        return {
            "config": self._config,
            "steps": self.optimizer.steps_taken,
            "nonfinite_examples": self.optimizer.nonfinite_examples,
            "budget": None if self.budget is None else self.budget.state_dict(),
            "accountant": self.accountant.state_dict(),
            "noise": self.noise.state_dict(),
            "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; everything is validated first (a refused state changes nothing)."""
        self._checked_state(state)()

    def _checked_state(self, state: Any) -> Callable[[], None]:
        """Validate an engine state completely; return the function that assigns it."""
        if self.optimizer is None:
            raise RuntimeError("call make_private (with the same settings) before loading a checkpoint")
        optimizer = self.optimizer
        keys = {"config", "steps", "budget", "accountant", "noise", "sampler"}
        if not isinstance(state, dict) or not keys <= set(state):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"engine state must be a dict with keys {sorted(keys)}, got {found}")
        config = state["config"]
        if not isinstance(config, dict) or set(config) != set(self._config):
            raise ValueError(f"engine state config must have the keys {sorted(self._config)}, got {config!r}")
        for key, value in config.items():
            mine: Any = self._config[key]
            if isinstance(value, float) and isinstance(mine, float):
                same = math.isclose(mine, value, rel_tol=1e-12)
            else:
                same = type(mine) is type(value) and mine == value
            if not same:
                raise ValueError(
                    f"checkpoint was made with {key}={value!r} but this engine has {key}={mine!r}; call "
                    "make_private with the settings of the checkpointed run"
                )
        steps = check_count("engine state steps", state["steps"], minimum=0)
        nonfinite = check_count("engine state nonfinite_examples", state.get("nonfinite_examples", 0), minimum=0)
        if (state["budget"] is None) != (self.budget is None):
            raise ValueError("checkpoint and engine disagree on whether a target_epsilon budget is enforced")
        if self.budget is not None:  # each load_state_dict validates completely before it assigns
            budget = self.budget
            probe = PrivacyBudget(budget.target_epsilon, budget.target_delta, accountant=budget.accountant.fresh())
            probe.load_state_dict(state["budget"])
            load_ledger: Callable[[], None] = lambda: budget.load_state_dict(state["budget"])  # noqa: E731
        else:
            probe_acc = self._accountant.fresh()
            probe_acc.load_state_dict(state["accountant"], "engine state accountant")
            load_ledger = lambda: self._accountant.load_state_dict(state["accountant"])  # noqa: E731
        noise_seed = self.noise.check_state(state["noise"], "engine state noise")
        sampler: Any = getattr(self.data_loader, "batch_sampler", None)
        restore_sampler = state["sampler"] is not None and hasattr(sampler, "check_state")
        sampler_seed = sampler.check_state(state["sampler"], "engine state sampler")[0] if restore_sampler else None

        def assign() -> None:
            load_ledger()
            self.noise.seed = noise_seed
            optimizer.steps_taken = steps
            optimizer.nonfinite_examples = nonfinite
            if restore_sampler:
                # One batch per step: continue with the batch after the last step taken (prefetching workers may
                # have drawn further ahead when the checkpoint was written).
                sampler.seed, sampler.position = sampler_seed, steps
            optimizer.engine.clear()  # the engine of make_private

        return assign

    def save_checkpoint(
        self, path: str | os.PathLike[str], *, model: nn.Module, optimizer: Optimizer, extra: Any = None
    ) -> None:
        """Write model, optimizer, engine state and the global torch RNG to ``path`` (``torch.save`` to a temporary
        file renamed to ``path``: an interrupted save never leaves a truncated checkpoint). :meth:`load_checkpoint`
        takes the same path. ``extra`` may hold None, bools, numbers, strings, tensors and lists / tuples / dicts
        of them (what ``torch.load(weights_only=True)`` reads back).

        Checkpoints contain the noise seed: whoever holds one can recompute the noise. Keep them private.

        Data-parallel run: every rank calls it; rank 0 writes the file (with every rank's torch RNG state) and every
        rank returns once it is written. The model's state is that of the module inside ``DistributedDataParallel``,
        so the checkpoint resumes on any number of processes.
        """
        target = check_path("path", path)
        _check_model_and_optimizer(model, optimizer)
        optimizer = self._dp_optimizer(optimizer)
        check_extra(extra)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model": _unwrapped(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "dpkit": json.dumps(self.state_dict()),
            "extra": extra,
        }
        if self.parallel is None:
            checkpoint.write(target, payload)
            return
        payload["torch_rng_ranks"] = self.parallel.rng_states()
        self.parallel.on_rank0(lambda: checkpoint.write(target, payload))

    def _dp_optimizer(self, optimizer: Optimizer) -> Optimizer:
        """The DP optimizer of ``make_private`` when ``optimizer`` is the optimizer it wraps (whose state dict lacks
        the DP optimizer's own state), else ``optimizer``."""
        if self.optimizer is not None and optimizer is self.optimizer.original_optimizer:
            return self.optimizer
        return optimizer

    def load_checkpoint(self, path: str | os.PathLike[str], *, model: nn.Module, optimizer: Optimizer) -> Any:
        """Restore what :meth:`save_checkpoint` wrote to ``path`` (``torch.load(weights_only=True)``); returns extra.

        Everything is checked before anything is assigned: the file's structure, the engine state against this
        engine's settings, the model and optimizer states against ``model`` and ``optimizer`` (keys, shapes,
        parameter groups). A refused checkpoint raises :class:`~dpkit.checkpoint.CheckpointError` (a
        ``ValueError``) in one line naming the file, and changes nothing.

        Data-parallel run: every rank calls it on the same file; each rank restores its own torch RNG state if the
        checkpoint was written by as many ranks, else rank 0's.
        """
        source = check_path("path", path)
        _check_model_and_optimizer(model, optimizer)
        optimizer = self._dp_optimizer(optimizer)
        model = _unwrapped(model)
        data = checkpoint.read(source)
        try:
            assign = self._checked_state(data["dpkit"])
            checkpoint.check_model_state(model, data["model"])
            if isinstance(optimizer, DPOptimizer):  # with the state of its own (DiceSGD's error, an adaptive norm)
                optimizer.check_state_dict(data["optimizer"])
            else:
                checkpoint.check_optimizer_state(optimizer, data["optimizer"])
            checkpoint.check_rng_state(data["torch_rng"])
            rng = data["torch_rng"] if self.parallel is None else self.parallel.checkpoint_rng_state(data)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: {e}") from None
        # everything is valid: assign
        model.load_state_dict(data["model"])
        optimizer.load_state_dict(data["optimizer"])
        assign()
        torch.set_rng_state(rng)
        return data["extra"]


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (checkpoints hold its state: any number of ranks)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _check_model_and_optimizer(model: object, optimizer: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
