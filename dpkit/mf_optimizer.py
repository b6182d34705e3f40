"""Correlated-noise training (matrix-factorization mechanisms): DP-SGD whose noise is correlated across steps.

A strategy C (:mod:`dpkit.mechanisms.matrix_factorization`) factorizes the running sum of the updates; step t adds

    sigma x clip_norm x sens(C) x (C^{-1} Z)_t,   Z of shape (n, d) with i.i.d. N(0, 1) entries,

to the sum of clipped per-example gradients instead of DP-SGD's independent noise, then divides by the expected
batch size and runs the wrapped optimizer (any linear update: SGD, momentum). Privacy (Denisov et al. 2022,
arXiv 2202.08312; Choquette-Choo et al. 2023, arXiv 2211.06530): everything the model reveals is post-processing of
C G + sigma clip_norm sens(C) Z, one Gaussian mechanism with noise multiplier sigma, where sens(C) is the strategy's
sensitivity under the participation the loader draws (:mod:`dpkit.mf_data`). Unit of privacy: one example;
add/remove neighbours (replace-one through the accountant). With cyclic Poisson sampling and a b_hat-banded C the
run is accounted as DP-SGD with rate q over ceil(n / b_hat) steps (Choquette-Choo et al. 2023, arXiv 2306.08153,
Thm. 4), and the noise is scaled by C's largest column norm instead.

The whole run's event is charged at its first step (the guarantee is for the n steps together; a shorter run is
post-processing of it): a budget refuses the run before the first step, and ``get_epsilon`` reports the whole
run's epsilon from then on. A strategy covers exactly n steps: step n + 1 is refused.

The noise rows are streamed (:meth:`NoisingRecurrence.peek` / ``commit``) in O(memory x d) space: nothing for DP-SGD,
b_hat - 1 vectors for a b_hat-banded C, one per buffer for BLT, O(d) with O(t d) time per step for dense and full
Toeplitz strategies (they re-draw earlier z). The draws are dpkit's seeded noise (:class:`dpkit.noise.GaussianNoise`,
a function of (seed, step)); the stream's buffers are part of the optimizer's ``state_dict`` so a resumed run adds
exactly the uninterrupted run's noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from dpkit.accountants import DpEvent, NonPrivateEvent, NoOpEvent
from dpkit.data import PoissonDataLoader, check_map_style, expected_batch_size
from dpkit.grad_sample.engine import ClippedSum
from dpkit.mechanisms.matrix_factorization import (
    FixedEpoch,
    MinSeparation,
    Participation,
    SingleParticipation,
    Strategy,
    amplified_banded_event,
    mf_event,
)
from dpkit.mf_data import cyclic_poisson_loader, fixed_epoch_loader
from dpkit.optimizer import DPOptimizer

__all__ = ["CorrelatedNoise", "CorrelatedRun", "MFOptimizer", "plan_correlated_run"]

_STATE_KEY = "correlated_noise"


@dataclasses.dataclass(frozen=True)
class CorrelatedNoise:
    """What ``make_private(noise=...)`` takes: a strategy and how the data participate.

    * ``participation=None`` (default): (k, b) fixed epochs, b = round(len(dataset) / batch_size) steps per epoch and
      k = strategy.n / b epochs (the strategy should be optimized for ``FixedEpoch(k, b)``);
    * ``FixedEpoch(k, b)`` or ``MinSeparation(b, k)``: the same fixed-epoch loader (b must match the data loader),
      with the sensitivity computed under that schema;
    * ``SingleParticipation()``: one pass, strategy.n <= b steps;
    * ``cyclic_poisson=True``: cyclic Poisson sampling over b_hat = strategy.bands groups (a banded strategy),
      amplified accounting; expected batch size = the data loader's batch size.
    """

    strategy: Strategy
    participation: Participation | None = None
    cyclic_poisson: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, Strategy):
            raise TypeError(f"noise.strategy must be a matrix-factorization Strategy, got {self.strategy!r}")
        if self.participation is not None and not isinstance(self.participation, Participation):
            raise TypeError(f"noise.participation must be None or a Participation schema, got {self.participation!r}")
        if not isinstance(self.cyclic_poisson, bool):
            raise TypeError(f"noise.cyclic_poisson must be True or False, got {self.cyclic_poisson!r}")
        if self.cyclic_poisson and self.participation is not None:
            raise ValueError(
                "noise.participation must be None with cyclic_poisson=True (cyclic Poisson sampling fixes it: "
                f"b_hat-min-separation with amplification), got {self.participation!r}"
            )


@dataclasses.dataclass(frozen=True, eq=False)
class CorrelatedRun:
    """A checked correlated-noise run: strategy, loader, sensitivity and the privacy event of the whole run."""

    strategy: Strategy
    participation: str  # description, e.g. "fixed-epoch (k=4, b=25)"
    loader: PoissonDataLoader
    sensitivity: float  # sens(C) per unit clip norm (largest column norm with amplification)
    sample_rate: float  # q for cyclic Poisson; else the fraction of the data in one step
    expected_batch_size: float
    steps_per_epoch: int
    amplified: bool

    @property
    def n(self) -> int:
        return self.strategy.n

    def event(self, noise_multiplier: float) -> DpEvent:
        """The privacy event of the whole n-step run at ``noise_multiplier``."""
        if self.amplified:
            return amplified_banded_event(self.strategy, noise_multiplier, self.sample_rate)
        return mf_event(noise_multiplier)

    def check_epochs(self, epochs: float) -> None:
        """``epochs`` passes of ``steps_per_epoch`` steps must be the strategy's n steps."""
        steps = max(1, math.ceil(epochs * self.steps_per_epoch))
        if steps != self.n:
            raise ValueError(
                f"epochs={epochs!r} x {self.steps_per_epoch} steps per epoch = {steps} steps, but noise.strategy was "
                f"built for n={self.n} steps; give epochs={self.n / self.steps_per_epoch:g} or a strategy for {steps}"
            )

    def describe(self) -> str:
        tag = ", amplified" if self.amplified else ""
        return f"{self.strategy.describe()} n={self.n}, {self.participation}{tag}, sensitivity={self.sensitivity:.12g}"


def plan_correlated_run(
    noise: Strategy | CorrelatedNoise, data_loader: DataLoader, *, seed: int | None, secure: bool
) -> CorrelatedRun:
    """Check ``noise`` against ``data_loader`` and build the participation loader (nothing else changes)."""
    if isinstance(noise, Strategy):
        noise = CorrelatedNoise(noise)
    if not isinstance(noise, CorrelatedNoise):
        raise TypeError(f"noise must be None, a Strategy or a CorrelatedNoise, got {noise!r}")
    if secure:
        raise ValueError(
            "secure_rng=True is not supported with correlated noise (noise=...): its noise stream is seeded so that "
            "strategies can re-draw earlier steps; use secure_rng=False"
        )
    strategy, n = noise.strategy, noise.strategy.n
    size = check_map_style(data_loader)
    batch = expected_batch_size(data_loader)
    per_epoch = max(1, round(size / batch))
    if noise.cyclic_poisson:
        bands = strategy.bands
        if bands is None:
            raise ValueError(
                f"noise.strategy must be banded for cyclic Poisson sampling, got {strategy.describe()} (all n "
                "diagonals nonzero)"
            )
        if bands > size:
            raise ValueError(f"noise.strategy.bands={bands} must be at most len(dataset)={size} (one group per band)")
        q = batch * bands / size
        if q > 1:
            raise ValueError(
                f"data_loader.batch_size={batch} must be at most len(dataset) / bands = {size / bands:g} for cyclic "
                f"Poisson sampling over {bands} groups (sample rate batch_size x bands / len(dataset) <= 1)"
            )
        loader = cyclic_poisson_loader(data_loader, bands, q, n, steps_per_epoch=per_epoch, seed=seed)
        sens = strategy.sensitivity(SingleParticipation()).value
        return CorrelatedRun(
            strategy, f"cyclic Poisson (b_hat={bands}, q={q:.6g})", loader, sens, q, float(batch), per_epoch, True
        )
    participation = _participation(noise.participation, n, per_epoch, size, batch)
    loader = fixed_epoch_loader(data_loader, per_epoch, n, seed=seed)
    sens = strategy.sensitivity(participation).value
    return CorrelatedRun(
        strategy, participation.describe(), loader, sens, 1 / per_epoch, size / per_epoch, per_epoch, False
    )


def _participation(given: Participation | None, n: int, b: int, size: int, batch: int) -> Participation:
    """The schema of the fixed-epoch loader with b batches per epoch over n steps, checked against ``given``."""
    loader = f"the data loader's b = round(len(dataset)={size} / batch_size={batch}) = {b} steps per epoch"
    if given is None:
        if n % b:
            raise ValueError(
                f"noise.strategy.n={n} must be k x b for fixed epochs, with {loader}; k x b != n for every k "
                "(change batch_size or the strategy's n)"
            )
        return FixedEpoch(n // b, b)
    if isinstance(given, FixedEpoch):
        if given.steps_per_epoch != b:
            raise ValueError(f"noise.participation.steps_per_epoch={given.steps_per_epoch} does not match {loader}")
        given.check(n)  # k x b == n
        return given
    if isinstance(given, MinSeparation):
        if given.min_sep != b:
            raise ValueError(f"noise.participation.min_sep={given.min_sep} does not match {loader}")
        given.check(n)
        need = math.ceil(n / b)
        if given.max_participations is not None and given.max_participations < need:
            raise ValueError(
                f"noise.participation.max_participations={given.max_participations} is below the {need} "
                f"participations of each example in n={n} steps with {loader}"
            )
        return given
    if isinstance(given, SingleParticipation):
        if n > b:
            raise ValueError(
                f"noise.participation is single participation, but n={n} steps exceed one pass with {loader}"
            )
        return given
    raise ValueError(f"noise.participation must be FixedEpoch, MinSeparation or SingleParticipation, got {given!r}")


class MFOptimizer(DPOptimizer):
    """DP optimizer adding the correlated noise sigma x sensitivity x sens(C) x (C^{-1} Z)_t (see the module docs)."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, run: CorrelatedRun, **kwargs: Any):
        if not isinstance(run, CorrelatedRun):
            raise TypeError(f"run must be a CorrelatedRun (plan_correlated_run), got {run!r}")
        super().__init__(optimizer, **kwargs)
        self.run = run
        self.recurrence = run.strategy.noising_recurrence()
        params = self.params
        same = all(p.dtype == params[0].dtype and p.device == params[0].device for p in params)
        self._dtype = params[0].dtype if same else torch.float32
        self._device = params[0].device if same else torch.device("cpu")
        self._dim = sum(p.numel() for p in params)
        self._state: list[torch.Tensor] = []  # the recurrence's buffers before step _stream_t
        self._stream_t = 0
        self._pending: torch.Tensor | None = None

    def __repr__(self) -> str:
        base = super().__repr__().replace("DPOptimizer(", "MFOptimizer(", 1)
        return f"{base[:-1]}, noise={self.run.describe()})"

    # ----------------------------------------------------------------- the stages DPOptimizer lets us override
    @property
    def step_event(self) -> DpEvent:
        if self.noise_multiplier == 0:
            return NonPrivateEvent()
        return self.run.event(self.noise_multiplier) if self.steps_taken == 0 else NoOpEvent()

    def pre_step(self) -> None:
        if self.steps_taken >= self.run.n:
            raise RuntimeError(
                f"noise.strategy was built for n={self.run.n} steps and all were taken: its sensitivity (and so the "
                "privacy guarantee) covers no more; build a strategy for a longer run"
            )
        if self.noise_multiplier > 0 and self._stream_t != self.steps_taken:
            raise RuntimeError(
                f"the correlated noise stream is at step {self._stream_t} but the optimizer at step "
                f"{self.steps_taken}: restore the optimizer's state_dict together with the engine's (load_checkpoint)"
            )
        self._pending = None
        super().pre_step()

    def _noise_std(self) -> float:
        return super()._noise_std() * self.run.sensitivity

    def _row(self) -> torch.Tensor:
        """(C^{-1} Z)_t for t = steps_taken (the state advances in :meth:`_after_step`)."""
        y = self.recurrence.peek(self._state, self._stream_t, self._draw)
        self._pending = y
        return y

    def _draw(self, step: int) -> torch.Tensor:
        return self.noise.fill_(torch.empty(self._dim, dtype=self._dtype, device=self._device), 1.0, step)

    def _fill_noise(self, buf: torch.Tensor, std: float) -> None:
        torch.mul(self._row(), std, out=buf)

    def _draw_noise(self, grads: Sequence[torch.Tensor], std: float) -> list[torch.Tensor]:
        parts = (self._row() * std).split([g.numel() for g in grads])
        return [z.to(device=g.device, dtype=g.dtype).view_as(g) for z, g in zip(parts, grads, strict=True)]

    def _after_step(self, clipped: ClippedSum) -> None:
        super()._after_step(clipped)
        if self._pending is not None:
            self.recurrence.commit(self._state, self._stream_t, self._pending)
            self._stream_t += 1
            self._pending = None

    # ----------------------------------------------------------------- state
    def noise_state_dict(self) -> dict[str, Any]:
        """The stream's position and buffers (tensors; keep as secret as the noise seed)."""
        return {
            "step": self._stream_t,
            "fingerprint": self.recurrence.fingerprint(),
            "buffers": [b.detach().clone() for b in self._state],
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), _STATE_KEY: self.noise_state_dict()}

    def check_extra_state(self, state_dict: Any) -> tuple[int, list[torch.Tensor]]:
        """The noise stream's (step, buffers) in an optimizer ``state_dict`` (a clear error otherwise)."""
        state = state_dict.get(_STATE_KEY) if isinstance(state_dict, dict) else None
        if not isinstance(state, dict) or set(state) != {"step", "fingerprint", "buffers"}:
            raise ValueError(
                f"optimizer state must hold {_STATE_KEY!r} (the correlated noise stream: step, fingerprint, buffers) "
                "from an MFOptimizer's state_dict"
            )
        if state["fingerprint"] != self.recurrence.fingerprint():
            raise ValueError(
                f"optimizer state {_STATE_KEY!r} was made with another strategy (fingerprint {state['fingerprint']!r},"
                f" this one {self.recurrence.fingerprint()!r})"
            )
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= self.run.n:
            raise ValueError(f"optimizer state {_STATE_KEY}.step must be in [0, n={self.run.n}], got {step!r}")
        buffers = state["buffers"]
        want = self.recurrence.state_size(step)
        if not isinstance(buffers, list) or len(buffers) != want:
            raise ValueError(f"optimizer state {_STATE_KEY}.buffers must be a list of {want} tensors at step {step}")
        for i, b in enumerate(buffers):
            if not isinstance(b, torch.Tensor) or b.shape != (self._dim,) or not bool(torch.isfinite(b).all()):
                raise ValueError(
                    f"optimizer state {_STATE_KEY}.buffers[{i}] must be a finite tensor of shape ({self._dim},)"
                )
        return step, [b.to(dtype=self._dtype, device=self._device).clone() for b in buffers]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The wrapped optimizer's state and the noise stream's, all checked before anything is assigned."""
        step, buffers = self.check_extra_state(state_dict)
        super().load_state_dict({k: v for k, v in state_dict.items() if k != _STATE_KEY})
        self._stream_t, self._state, self._pending = step, buffers, None
