"""Measure a poisoning attack on a frequency oracle: genuine users, fake users, the server, with or without a
defense; the simulated gain next to the closed-form one.

:func:`simulate` runs n genuine users through the protocol's client, crafts m = round(beta n/(1 - beta)) fake
reports with the attack, lets the server aggregate (its report check runs on the fake reports too) and estimates:

* before: from the genuine reports alone; after: from all reports (or from the reports a detector did not flag);
  without a detector the fake reports are crafted and aggregated in chunks (:func:`aggregate_fakes`) and the
  genuine ones through ``perturb_aggregate``, so memory stays bounded; a detector needs every report at once;
* ``gain`` = sum_{t in T} (after_t - before_t); ``analytic_gain`` = beta (sum_t E phi_t(fake) - f_T), the expected
  gain against the unbiased estimator (Cao et al.); ``gain_std`` its standard deviation (items' covariances
  neglected), so a simulation sits within a few ``gain_std`` of ``analytic_gain`` when there is no defense.

Defenses (:mod:`.defenses`): 'normalize' post-processes both estimates (Norm-Sub by default), 'detect' removes the
reports the protocol's detector flags and reports ``detected_fraction`` (fake users flagged) and
``false_positive_rate`` (genuine users flagged). :func:`gain_table` runs every (protocol, attack) pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dpkit.audits.poisoning.attacks import ATTACKS
from dpkit.audits.poisoning.defenses import Detection, default_detector
from dpkit.audits.poisoning.scores import n_items, report_scores, true_frequencies
from dpkit.audits.poisoning.threat import check_fake_fraction, check_targets, fake_count
from dpkit.mechanisms._validation import check_count, check_rng, check_values
from dpkit.mechanisms.base import FrequencyOracle, SupportCounts
from dpkit.mechanisms.frequency_oracles import FREQUENCY_ORACLES, make_oracle

__all__ = [
    "PoisoningResult",
    "FakeAggregate",
    "aggregate_fakes",
    "fake_chunk_size",
    "simulate",
    "gain_table",
    "check_attack",
    "DEFENSES",
]

DEFENSES = ("none", "normalize", "detect")


@dataclass(frozen=True)
class PoisoningResult:
    """One measured attack (see the module docstring for the quantities)."""

    protocol: str
    attack: str
    k: int
    epsilon: float
    targets: list[int]
    n_genuine: int
    n_fake: int
    beta: float
    gain: float
    analytic_gain: float | None
    gain_std: float | None
    target_frequency: float
    target_frequency_before: float
    target_frequency_after: float
    defense: str = "none"
    detected_fraction: float | None = None
    false_positive_rate: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, protocol: Any, attack: str, k: int, targets: Any, n: int, m: int, **measured: Any) -> PoisoningResult:
        """The fields every simulation shares, from the protocol and the population (beta = m/(n + m)), and the
        measured ones as given."""
        return cls(
            protocol=repr(protocol),
            attack=attack,
            k=int(k),
            epsilon=float(protocol.epsilon),
            targets=[int(t) for t in targets],
            n_genuine=int(n),
            n_fake=int(m),
            beta=m / (n + m),
            **measured,
        )


def check_attack(attack: str) -> str:
    """An attack name of ``ATTACKS`` (case-insensitive)."""
    key = str(attack).lower()
    if key not in ATTACKS:
        raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
    return key


def _concat(a: Any, b: Any) -> Any:
    return np.concatenate([np.asarray(a), np.asarray(b).astype(np.asarray(a).dtype, copy=False)])


@dataclass(frozen=True)
class FakeAggregate:
    """The server's state of m fake reports, their closed-form E phi (weighted over the chunks they were crafted
    in; None without a closed form), the attack's ``info`` and the variance of one fake report's total score on
    the targets (from the first chunk)."""

    state: SupportCounts
    expected_scores: np.ndarray | None
    info: dict[str, Any]
    score_variance: float


def _score_variance(protocol: FrequencyOracle, reports: Any, targets: np.ndarray, sample: int = 10_000) -> float:
    """The variance of one fake report's total score on the targets, from up to ``sample`` reports."""
    if len(reports) == 0 or sample <= 0:
        return 0.0
    return float(np.var(report_scores(protocol, reports[: min(len(reports), sample)], targets).sum(axis=1)))


def fake_chunk_size(protocol: FrequencyOracle, rng: np.random.Generator, budget: int = 1 << 26) -> int:
    """Fake users per chunk: about ``budget`` bytes of reports (the size of one genuine report, measured)."""
    row = np.asarray(protocol.perturb(np.zeros(1, dtype=np.int64), rng)).nbytes
    return max(1 << 12, budget // max(row, 1))


def aggregate_fakes(
    protocol: FrequencyOracle,
    attack: str,
    targets: Any,
    m: int,
    rng: np.random.Generator,
    chunk_size: int | None = None,
    variance_sample: int = 10_000,
    **attack_options: Any,
) -> FakeAggregate:
    """Craft m fake reports with ``attack`` and aggregate them chunk by chunk (memory bounded by one chunk, by
    default about 64 MB of reports); the server's report check runs on every chunk. Each chunk is one call of the
    attack (MGA on local hashing searches its hash functions again per chunk). ``score_variance`` comes from the
    first ``variance_sample`` reports (0: not computed)."""
    key = check_attack(attack)
    targets = check_targets("targets", targets, n_items(protocol))
    m = check_count("m", m)
    size = chunk_size if chunk_size is not None else fake_chunk_size(protocol, rng)
    state = protocol.empty_state()
    total: np.ndarray | None = np.zeros(n_items(protocol))
    info: dict[str, Any] = {}
    var = 0.0
    for start in range(0, max(m, 1), size):
        chunk = min(size, m - start)
        fake = ATTACKS[key](protocol, targets, chunk, rng, **attack_options)
        state = state + protocol.aggregate(fake.reports)
        if start == 0:
            info, var = dict(fake.info), _score_variance(protocol, fake.reports, targets, variance_sample)
        if total is not None and fake.expected_scores is not None:
            total = total + max(chunk, 1) * fake.expected_scores
        else:
            total = None
    return FakeAggregate(state, None if total is None else total / max(m, 1), info, var)


def simulate(
    protocol: FrequencyOracle,
    attack: str,
    values: Any,
    targets: Any,
    beta: float,
    rng: np.random.Generator,
    *,
    defense: str | Callable[[FrequencyOracle, Any], Detection] = "none",
    postprocess: str = "norm-sub",
    **attack_options: Any,
) -> PoisoningResult:
    """Poison ``protocol`` with ``attack`` ('rpa', 'ria', 'mga') at fake fraction ``beta`` against the genuine
    users' ``values`` (one item per user) and measure the gain on ``targets``.

    ``defense``: 'none', 'normalize' (``postprocess`` on both estimates: 'norm-sub', 'clip' or 'ibu'), 'detect'
    (the protocol's default detector, :func:`~dpkit.audits.poisoning.defenses.default_detector`) or a detector
    ``(protocol, reports) -> Detection``. ``attack_options`` go to the attack (e.g. ``padding=`` for unary
    encoding, ``n_hashes=`` for local hashing).
    """
    key = check_attack(attack)
    k = n_items(protocol)
    values = check_values("values", values, protocol.k)
    if len(values) == 0:
        raise ValueError("values must hold at least one genuine user, got 0")
    targets = check_targets("targets", targets, k)
    beta = check_fake_fraction("beta", beta)
    check_rng(rng)
    detector: Callable[[FrequencyOracle, Any], Detection] | None = None
    if callable(defense):
        detector, defense_name = defense, getattr(defense, "__name__", "detect")
    elif defense in ("none", None):
        defense_name = "none"
    elif defense == "normalize":
        defense_name = "normalize"
    elif defense == "detect":
        detector, defense_name = default_detector(protocol), "detect"
        if detector is None:
            raise ValueError(
                f"defense 'detect': {protocol.name} has no fake-user detector (one needs reports whose support holds "
                "several items, as unary encoding, SS and THE, or a hash function, as local hashing); use 'normalize'"
            )
    else:
        raise ValueError(f"defense must be one of {', '.join(DEFENSES)} or a detector, got {defense!r}")
    n = len(values)
    m = fake_count(n, beta)
    beta_real = m / (n + m)
    f_true = true_frequencies(protocol, values)
    f_t = float(f_true[targets].sum())
    pp = postprocess if defense_name == "normalize" else None
    flags = None
    if detector is None:  # fake reports crafted and aggregated chunk by chunk: memory bounded by one chunk
        fakes = aggregate_fakes(protocol, key, targets, m, rng, **attack_options)
        state_g = protocol.perturb_aggregate(values, rng)
        state_all = state_g + fakes.state
    else:  # the detector reads every report
        fake = ATTACKS[key](protocol, targets, m, rng, **attack_options)
        fakes = FakeAggregate(protocol.aggregate(fake.reports), fake.expected_scores, fake.info,
                              _score_variance(protocol, fake.reports, targets))  # fmt: skip
        genuine = protocol.perturb(values, rng)
        state_g = protocol.aggregate(genuine)
        everyone = _concat(genuine, fake.reports)
        detection = detector(protocol, everyone)
        flags = detection.flags
        if flags.all():
            raise ValueError("the detector flagged every report: nothing left to estimate from")
        state_all = protocol.aggregate(everyone[~flags])
    before = protocol.estimate(state_g, postprocess=pp)
    after = protocol.estimate(state_all, postprocess=pp)
    gain = float(np.sum(after[targets] - before[targets]))
    analytic = None
    if fakes.expected_scores is not None:
        analytic = float(beta_real * (np.sum(fakes.expected_scores[targets]) - f_t))
    std = None
    if m > 0 and analytic is not None:
        var_genuine = float(np.sum(np.asarray(protocol.variance(n, f_true))[targets]))
        std = beta_real * math.sqrt(var_genuine + fakes.score_variance / m)
    info = dict(fakes.info)
    detected = fpr = None
    if flags is not None:
        detected = float(flags[n:].mean()) if m else 0.0
        fpr = float(flags[:n].mean())
        info["detection"] = detection.info
    return PoisoningResult.of(
        protocol,
        key,
        k,
        targets,
        n,
        m,
        gain=gain,
        analytic_gain=analytic,
        gain_std=std,
        target_frequency=f_t,
        target_frequency_before=float(before[targets].sum()),
        target_frequency_after=float(after[targets].sum()),
        defense=defense_name,
        detected_fraction=detected,
        false_positive_rate=fpr,
        info=info,
    )


def gain_table(
    k: int,
    epsilon: float,
    values: Any,
    targets: Any,
    beta: float,
    rng: np.random.Generator,
    *,
    protocols: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    defense: str = "none",
) -> list[dict[str, Any]]:
    """:func:`simulate` for every (protocol, attack) pair (default: every frequency oracle, every attack), one row
    each: protocol, attack, gain, analytic_gain, target frequencies, detected_fraction and false_positive_rate
    (with 'detect'; None where the protocol has no detector)."""
    rows = []
    for name in protocols or list(FREQUENCY_ORACLES):
        proto = make_oracle(name, k, epsilon)
        for attack in attacks or list(ATTACKS):
            use = defense
            if defense == "detect" and default_detector(proto) is None:
                use = "none"
            res = simulate(proto, attack, values, targets, beta, rng, defense=use)
            row = res.to_dict()
            row["parameters"], row["protocol"] = row["protocol"], name
            row.pop("info")
            if use != defense:
                row["defense"] = "detect (no detector: none)"
            rows.append(row)
    return rows
