"""What ``PrivacyEngine.make_private`` decides before it changes anything: the plan of a private run.

:func:`plan_training` validates every argument (module, optimizer, clipping, noise, the DP-SGD variant), builds the
sampled loader (exact Poisson sampling, or the participation of a correlated-noise run), calibrates the noise to a
target epsilon and checks its scale, and, for a data-parallel run, agrees on all of it with rank 0. It returns a
:class:`TrainingPlan` and changes nothing: the module, the optimizer and the engine are only touched once the plan
exists (``PrivacyEngine`` applies it), so a bad argument never leaves a half-private model behind.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from dpkit.accountants import PrivacyAccountant, PrivacyBudget, calibrate_noise, calibrate_noise_multiplier
from dpkit.accountants.validation import check_count, check_delta, check_nonnegative, check_positive
from dpkit.adaptive_clipping import AdaptiveClipping, AdaptiveClippingOptimizer, adaptive_clipping
from dpkit.data import check_map_style, expected_batch_size, poisson_data_loader
from dpkit.error_feedback import (
    DiceSGDOptimizer,
    NoiseInflation,
    check_dice_noise,
    check_error_feedback_clip,
    dice_noise_inflation,
    noise_inflation_factor,
)
from dpkit.grad_sample import ClippingPolicy, FlatClipping, PerLayerClipping
from dpkit.grad_sample.engine import LOSS_REDUCTIONS
from dpkit.mechanisms.matrix_factorization import Strategy
from dpkit.mf_optimizer import CorrelatedNoise, CorrelatedRun, plan_correlated_run
from dpkit.optimizer import DPOptimizer, check_noise_scale, warn_no_noise

if TYPE_CHECKING:
    from dpkit.distributed.data_parallel import DataParallel

CLIPPING_MODES = ("flat", "per_layer")


@dataclasses.dataclass(frozen=True)
class _FixedNoise:
    """Noise given as a multiplier of the sensitivity (0: not private)."""

    noise_multiplier: float


@dataclasses.dataclass(frozen=True)
class _EpsilonTarget:
    """Noise calibrated so that ``epochs`` passes over the data spend ``epsilon`` at ``delta`` (then enforced)."""

    epsilon: float
    delta: float
    epochs: float


@dataclasses.dataclass(frozen=True)
class _Checked:
    """``make_private``'s arguments once validated: what is trained, how it is clipped, how the noise is chosen."""

    params: list[nn.Parameter]  # the optimizer's trainable parameters, in order, each once
    policy: ClippingPolicy
    noise: _FixedNoise | _EpsilonTarget
    max_physical_batch_size: int | None


@dataclasses.dataclass(frozen=True)
class _Sampling:
    """The loader of private training and what the accountant needs to know of its batches."""

    loader: DataLoader
    sample_rate: float  # q = expected batch size / N
    expected_batch_size: float  # an int, except with correlated noise (len(dataset) / steps per epoch)
    steps_per_epoch: int


def _check_max_grad_norm(value: Any, clipping: str) -> float | list[float]:
    """One clipping threshold > 0, or (``clipping="per_layer"`` only) one per parameter tensor."""
    if clipping == "per_layer" and isinstance(value, Sequence) and not isinstance(value, str):
        return [check_positive(f"max_grad_norm[{i}]", c) for i, c in enumerate(value)]
    return check_positive("max_grad_norm", value)


def _clipping_policy(clipping: str, max_grad_norm: float | list[float], num_params: int) -> ClippingPolicy:
    """The clipping policy for ``num_params`` trainable parameter tensors (its sensitivity scales the noise)."""
    if isinstance(max_grad_norm, list):  # one threshold per parameter tensor (only with clipping="per_layer")
        return PerLayerClipping(max_grad_norm, num_params)
    return FlatClipping(max_grad_norm) if clipping == "flat" else PerLayerClipping(max_grad_norm, num_params)


def _check_noise(
    noise_multiplier: float | None, target_epsilon: float | None, target_delta: float | None, epochs: float | None
) -> _FixedNoise | _EpsilonTarget:
    """Exactly one of ``noise_multiplier`` (>= 0) and ``target_epsilon`` (> 0, with target_delta and epochs)."""
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError(
            "give exactly one of noise_multiplier (>= 0) and target_epsilon (> 0, with target_delta and "
            f"epochs); got noise_multiplier={noise_multiplier!r}, target_epsilon={target_epsilon!r}"
        )
    if target_epsilon is not None:
        target_epsilon = check_positive("target_epsilon", target_epsilon)
        if target_delta is None or epochs is None:
            raise ValueError(
                "target_epsilon needs target_delta in (0, 1) and epochs in (0, inf); got "
                f"target_delta={target_delta!r}, epochs={epochs!r}"
            )
        return _EpsilonTarget(
            target_epsilon, check_delta("target_delta", target_delta), check_positive("epochs", epochs)
        )
    noise_multiplier = check_nonnegative("noise_multiplier", noise_multiplier)
    if epochs is not None or target_delta is not None:
        raise ValueError(
            "epochs and target_delta are only used with target_epsilon (to calibrate the noise); got "
            f"epochs={epochs!r}, target_delta={target_delta!r} with "
            f"noise_multiplier={noise_multiplier!r}"
        )
    return _FixedNoise(noise_multiplier)


def _trainable_params(module: nn.Module, optimizer: Optimizer) -> list[nn.Parameter]:
    """The optimizer's trainable parameters (each once, in order), all of which must belong to the module."""
    module_params = {id(p) for p in module.parameters()}
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for gi, group in enumerate(optimizer.param_groups):
        for pi, p in enumerate(group["params"]):
            if id(p) not in module_params:
                raise ValueError(
                    f"optimizer.param_groups[{gi}]['params'][{pi}] (shape {tuple(p.shape)}) is not a "
                    "parameter "
                    "of module; the optimizer must only hold parameters of the module passed to "
                    "make_private"
                )
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    if not params:
        raise ValueError("optimizer holds no trainable parameters (requires_grad=True) of module")
    return params


def _check_arguments(
    module: nn.Module,
    optimizer: Optimizer,
    *,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    target_delta: float | None,
    epochs: float | None,
    max_grad_norm: float | Sequence[float],
    max_physical_batch_size: int | None,
    clipping: str,
    loss_reduction: str,
    poisson_sampling: bool,
) -> _Checked:
    """Validate ``make_private``'s arguments (the data loader excepted), in order, before anything is built."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(optimizer, DPOptimizer) or not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a plain torch.optim.Optimizer, got {type(optimizer).__name__}")
    if clipping not in CLIPPING_MODES:
        raise ValueError(f"clipping must be one of {CLIPPING_MODES}, got {clipping!r}")
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
    if not isinstance(poisson_sampling, bool):
        raise TypeError(f"poisson_sampling must be True or False, got {poisson_sampling!r}")
    if max_physical_batch_size is not None:
        max_physical_batch_size = check_count("max_physical_batch_size", max_physical_batch_size, minimum=1)
    norm = _check_max_grad_norm(max_grad_norm, clipping)
    noise = _check_noise(noise_multiplier, target_epsilon, target_delta, epochs)
    params = _trainable_params(module, optimizer)
    return _Checked(params, _clipping_policy(clipping, norm, len(params)), noise, max_physical_batch_size)


def _sampled_loader(
    data_loader: DataLoader,
    poisson_sampling: bool,
    *,
    seed: int | None,
    secure: bool,
    shard: tuple[int, int] | None = None,
) -> _Sampling:
    """The loader of private training: exact Poisson sampling with rate q = batch_size / N (or, with
    ``poisson_sampling=False``, the loader itself, with a warning that the accounting then assumes it). ``shard``:
    (rank, world size) of a data-parallel run, whose ranks draw their parts of the global batches."""
    n = check_map_style(data_loader)
    batch = expected_batch_size(data_loader)
    q = batch / n
    if shard is not None and not poisson_sampling:
        raise ValueError("poisson_sampling must be True for a DistributedDataParallel model, got False")
    if poisson_sampling:
        loader = poisson_data_loader(data_loader, sample_rate=q, seed=seed, secure=secure, shard=shard)
        return _Sampling(loader, q, batch, len(loader))  # its batch sampler's steps_per_epoch
    warnings.warn(
        "poisson_sampling=False: the loader's batches are not Poisson samples, so the epsilon "
        "reported "
        "(computed for Poisson sampling with q = batch_size / N) is an approximation, not a "
        "guarantee",
        UserWarning,
        stacklevel=4,  # make_private's caller
    )
    return _Sampling(data_loader, q, batch, max(len(data_loader), 1))


def _noise_multiplier(
    noise: _FixedNoise | _EpsilonTarget,
    sampling: _Sampling,
    accountant: PrivacyAccountant,
    correlated: CorrelatedRun | None = None,
) -> tuple[float, PrivacyBudget | None]:
    """The noise multiplier and, for a target epsilon, the budget that enforces it.

    Calibration: the smallest multiplier whose ``ceil(epochs * steps_per_epoch)`` Poisson-sampled Gaussian steps
    (with correlated noise: the whole run's event) spend at most the target epsilon at the target delta, by
    ``accountant``'s accounting.
    """
    if isinstance(noise, _FixedNoise):
        if noise.noise_multiplier == 0:
            warn_no_noise(stacklevel=5)  # make_private's caller
        return noise.noise_multiplier, None
    if correlated is not None:
        correlated.check_epochs(noise.epochs)
        sigma = calibrate_noise(correlated.event, noise.epsilon, noise.delta, accountant.fresh())
        return sigma, PrivacyBudget(noise.epsilon, noise.delta, accountant=accountant)
    total_steps = max(1, math.ceil(noise.epochs * sampling.steps_per_epoch))
    sigma = calibrate_noise_multiplier(
        noise.epsilon, noise.delta, sampling.sample_rate, total_steps, accountant=accountant.fresh()
    )
    return sigma, PrivacyBudget(noise.epsilon, noise.delta, accountant=accountant)


@dataclasses.dataclass(frozen=True)
class _Variant:
    """Which DP optimizer ``make_private`` builds: DP-SGD, DiceSGD (``error_feedback_clip``) or adaptive clipping
    (``max_grad_norm="adaptive"``), its own arguments, the settings a checkpoint must repeat, and the check of the
    noise it draws (``check_noise(sigma, expected_batch_size, params)``, before anything is built)."""

    cls: type[DPOptimizer] = DPOptimizer
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    check_noise: Callable[[float, float, list[nn.Parameter]], Any] = lambda sigma, batch, params: None


def _check_variant(
    adaptive: AdaptiveClipping | None,
    policy: ClippingPolicy,
    error_feedback_clip: float | None,
    error_feedback_noise_inflation: NoiseInflation | None,
) -> _Variant:
    """Validate the arguments of the DP-SGD variants (before any work)."""
    if error_feedback_clip is None:
        if error_feedback_noise_inflation is not None:
            raise ValueError("error_feedback_noise_inflation is only used with error_feedback_clip (DiceSGD)")
        if adaptive is None:
            return _Variant()
        return _Variant(
            AdaptiveClippingOptimizer,
            {"adaptive": adaptive},
            {"adaptive_clipping": dataclasses.asdict(adaptive)},
            adaptive.gradient_noise,
        )
    if adaptive is not None:
        raise ValueError(
            "error_feedback_clip (DiceSGD) needs a fixed max_grad_norm (C2 >= C1 must hold at every step), got "
            "max_grad_norm='adaptive'"
        )
    c1 = policy.sensitivity
    c2 = check_error_feedback_clip(error_feedback_clip, c1)
    k = noise_inflation_factor(error_feedback_noise_inflation or dice_noise_inflation, c1, c2)
    return _Variant(
        DiceSGDOptimizer,
        {"error_feedback_clip": c2, "noise_inflation": k},
        {"error_feedback_clip": c2, "error_feedback_noise_inflation": k},
        lambda sigma, batch, params: check_dice_noise(sigma, c1, k, batch, params),
    )


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """A private run as ``make_private`` decided it, before any change: what is trained (``module``: the model,
    unwrapped from ``DistributedDataParallel``; ``parallel``: its process group, or None), by which DP optimizer
    (``variant``, ``correlated``), on which batches (``sampling``), with which noise (``noise_multiplier``, the
    ``budget`` that enforces a target epsilon, the run's ``seed``), and the settings a checkpoint must repeat
    (``config``)."""

    module: nn.Module
    parallel: DataParallel | None
    seed: int | None
    checked: _Checked
    variant: _Variant
    sampling: _Sampling
    correlated: CorrelatedRun | None
    noise_multiplier: float
    budget: PrivacyBudget | None
    config: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """What the ``PrivacyEngine`` brings to the plan: its accountant (and registry name), its per-sample gradient
    engine's name, and its randomness (the seed, whether the user gave it, whether the OS CSPRNG is used)."""

    accountant: PrivacyAccountant
    accountant_name: str
    grad_sample_engine: str
    seed: int | None
    seed_given: bool
    secure_rng: bool


def plan_training(
    module: nn.Module,
    optimizer: Optimizer,
    data_loader: DataLoader,
    engine: EngineSettings,
    *,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    target_delta: float | None,
    epochs: float | None,
    max_grad_norm: float | Sequence[float] | str | AdaptiveClipping,
    max_physical_batch_size: int | None,
    clipping: str,
    loss_reduction: str,
    poisson_sampling: bool,
    error_feedback_clip: float | None,
    error_feedback_noise_inflation: NoiseInflation | None,
    noise: Strategy | CorrelatedNoise | None,
) -> TrainingPlan:
    """Validate ``make_private``'s arguments, build the loader and calibrate the noise (see the module docs);
    ``engine``: the settings of the ``PrivacyEngine`` that plans. Changes nothing."""
    seed, secure_rng = engine.seed, engine.secure_rng
    adaptive = adaptive_clipping(max_grad_norm)  # None for a fixed norm (a string other than "adaptive" raises)
    if adaptive is not None and clipping != "flat":
        raise ValueError(f"max_grad_norm='adaptive' needs clipping='flat' (one norm), got clipping={clipping!r}")
    fixed_norm = adaptive.initial_norm if adaptive is not None else cast("float | Sequence[float]", max_grad_norm)
    inner, parallel = _data_parallel_of(module)
    if parallel is not None:
        if adaptive is not None or error_feedback_clip is not None or noise is not None:
            raise ValueError(
                "a DistributedDataParallel module trains with DP-SGD only: give it without max_grad_norm="
                "'adaptive', error_feedback_clip or noise"
            )
        seed = parallel.agree_seed(seed, engine.seed_given, secure_rng)
    checked = _check_arguments(
        inner,
        optimizer,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        target_delta=target_delta,
        epochs=epochs,
        max_grad_norm=fixed_norm,
        max_physical_batch_size=max_physical_batch_size,
        clipping=clipping,
        loss_reduction=loss_reduction,
        poisson_sampling=poisson_sampling,
    )
    variant = _check_variant(adaptive, checked.policy, error_feedback_clip, error_feedback_noise_inflation)
    correlated = None
    if noise is None:
        shard = None if parallel is None else parallel.shard
        sampling = _sampled_loader(data_loader, poisson_sampling, seed=seed, secure=secure_rng, shard=shard)
    else:
        if variant.cls is not DPOptimizer:
            raise ValueError(
                "noise (correlated noise) is used with DP-SGD's fixed clipping only: give it without "
                f"error_feedback_clip and with a number as max_grad_norm (got {variant.cls.__name__})"
            )
        correlated = plan_correlated_run(noise, data_loader, seed=seed, secure=secure_rng)
        sampling = _Sampling(
            correlated.loader, correlated.sample_rate, correlated.expected_batch_size, correlated.steps_per_epoch
        )
    sigma, budget = _noise_multiplier(checked.noise, sampling, engine.accountant, correlated)
    mf_sens = 1.0 if correlated is None else correlated.sensitivity  # correlated noise scales by sens(C)
    check_noise_scale(sigma * mf_sens, checked.policy.sensitivity, sampling.expected_batch_size, checked.params)
    variant.check_noise(sigma, sampling.expected_batch_size, checked.params)
    config: dict[str, Any] = {
        "noise_multiplier": sigma,
        "sample_rate": sampling.sample_rate,
        "expected_batch_size": sampling.expected_batch_size,
        "sensitivity": checked.policy.sensitivity,
        "clipping": clipping,
        "loss_reduction": loss_reduction,
        "poisson_sampling": poisson_sampling,
        "accountant": engine.accountant_name,
        **variant.config,
    }
    if correlated is not None:
        config["correlated_noise"] = correlated.describe()
    if parallel is not None:  # every rank must have rank 0's settings (else all raise, before any change)
        parallel.agree(
            "make_private",
            {
                "noise_multiplier": sigma,
                "sample_rate": sampling.sample_rate,
                "expected_batch_size": sampling.expected_batch_size,
                "dataset_size": check_map_style(data_loader),
                "sensitivity": checked.policy.sensitivity,
                "clipping": clipping,
                "loss_reduction": loss_reduction,
                "accountant": engine.accountant_name,
                "grad_sample_engine": engine.grad_sample_engine,
                "parameters": [tuple(p.shape) for p in checked.params],
                "budget": None if budget is None else (budget.target_epsilon, budget.target_delta),
            },
        )
    return TrainingPlan(inner, parallel, seed, checked, variant, sampling, correlated, sigma, budget, config)


def _data_parallel_of(module: nn.Module) -> tuple[nn.Module, DataParallel | None]:
    """``(the module to train, its data-parallel group or None)`` (dpkit.distributed is imported only for DDP)."""
    if not isinstance(module, DistributedDataParallel):
        return module, None
    from dpkit.distributed.data_parallel import DataParallel

    return module.module, DataParallel(module)
