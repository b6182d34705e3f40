"""The distinguishing game of LDP-Auditor (Arcolezi and Gambs, PoPETs 2024), vectorized, with likelihood-ratio and
family tests.

``audit(target, trials, confidence)`` runs the target's real randomizer ``trials`` times on v1 and ``trials``
times on v2 (in chunks, so memory stays bounded), applies every test and returns an :class:`AuditResult`:

* ``lr``: the likelihood-ratio test in both directions, its event chosen from the exact *claimed* distribution of
  the statistic before any trial is run (it needs no data, so the bound is unbiased);
* ``lr-split``: the same statistic with the event chosen from the empirical distribution of an extra training
  split of ``train_fraction * trials`` trials per input, never reused for evaluation. It catches leaks the
  claimed model does not predict (e.g. a wrong q that makes the *other* bits informative) and is the only LR
  test for targets without a model;
* LDP-Auditor's family attack ("guess = v1").

The reported lower bound is the maximum over the tests, each computed with Clopper-Pearson quantiles at
(1 - confidence) / (2 * #tests), so it holds at ``confidence`` jointly (union bound). The cap (the largest bound
``trials`` can show at that level) is reported beside it. ``violation`` is lower bound > claimed epsilon.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from dpkit.accountants.validation import check_count, check_probability
from dpkit.audits.ldp.bounds import choose_event, epsilon_lower_bound, measurable_cap, side_level
from dpkit.audits.ldp.targets import Target

__all__ = ["TestResult", "AuditResult", "audit", "ATTACKS"]

ATTACKS = ("lr", "lr-split", "family")


@dataclass(frozen=True)
class TestResult:
    """One test: its event's counts on the v1 trials (tp) and v2 trials (fp) and its epsilon lower bound."""

    name: str
    tp: int
    fp: int
    trials: int
    epsilon_lower_bound: float
    expected: float | None = None  # the bound a correct implementation gives in expectation (LR tests only)

    @property
    def tpr(self) -> float:
        return self.tp / self.trials

    @property
    def fpr(self) -> float:
        return self.fp / self.trials


@dataclass(frozen=True)
class AuditResult:
    """The outcome of one audit setting. ``to_dict()`` has the CLI's JSON keys first."""

    target: str
    epsilon_claimed: float
    epsilon_lower_bound: float
    cap: float
    trials: int
    confidence: float
    violation: bool
    delta: float
    k: int
    best_test: str
    tests: tuple = ()
    finding: str | None = None
    seconds: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.violation:
            return (
                f"VIOLATION: epsilon >= {self.epsilon_lower_bound:.4g} with confidence {self.confidence:g}, "
                f"above the claimed {self.epsilon_claimed:g}"
            )
        if self.finding:
            return "pass, with a finding: " + self.finding
        if self.epsilon_claimed >= self.cap:
            return (
                f"pass (note: the claim {self.epsilon_claimed:g} is above the cap {self.cap:.4g} of "
                f"{self.trials} trials; more trials are needed to test it fully)"
            )
        return "pass"

    def to_dict(self) -> dict:
        d = {
            "target": self.target,
            "epsilon_claimed": self.epsilon_claimed,
            "epsilon_lower_bound": _num(self.epsilon_lower_bound),
            "cap": _num(self.cap),
            "trials": self.trials,
            "confidence": self.confidence,
            "violation": self.violation,
            "delta": self.delta,
            "k": self.k,
            "best_test": self.best_test,
            "finding": self.finding,
            "verdict": self.verdict,
            "seconds": round(self.seconds, 4),
            "params": self.params,
            "tests": [
                {
                    **asdict(t),
                    "epsilon_lower_bound": _num(t.epsilon_lower_bound),
                    "expected": None if t.expected is None else _num(t.expected),
                }
                for t in self.tests
            ],
        }
        return d


def _num(x: float):
    return x if math.isfinite(x) else str(x)


def _simulate(target: Target, n: int, rng, stat, fam, bar, hist_len: int):
    """Per input: code histogram of the statistic and the family attack's count of guess == v1."""
    hists = [np.zeros(hist_len, dtype=np.int64) for _ in range(2)]
    fam_counts = [0, 0]
    rows = max(1, int(target.chunk_rows))
    for which in (0, 1):
        done = 0
        while done < n:
            m = min(rows, n - done)
            reports = target.sample(which, m, rng)
            if stat is not None:
                hists[which] += np.bincount(np.asarray(stat.codes(reports), dtype=np.int64), minlength=hist_len)
            if fam is not None:
                fam_counts[which] += int(np.count_nonzero(fam(reports, rng)))
            done += m
            if bar is not None:
                bar.update(m)
    return hists, fam_counts


def audit(
    target: Target,
    trials: int | None = None,
    *,
    confidence: float = 0.99,
    seed: int | None = 0,
    attacks=ATTACKS,
    progress: bool = False,
    train_fraction: float = 0.25,
) -> AuditResult:
    """Run the game on ``target`` (see the module docstring)."""
    trials = check_count("trials", target.default_trials if trials is None else trials, minimum=1)
    confidence = check_probability("confidence", confidence, open_low=True, open_high=True)
    attacks = tuple(attacks)
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        raise ValueError(f"attacks must be a non-empty subset of {ATTACKS}, got {attacks!r}")
    rng = np.random.default_rng(seed)
    stat = target.statistic() if ("lr" in attacks or "lr-split" in attacks) else None
    model_lr = stat is not None and stat.pmf is not None and "lr" in attacks
    split_lr = stat is not None and ("lr-split" in attacks or not model_lr)
    fam = target.family_attack() if "family" in attacks else None
    n_tests = 2 * model_lr + 2 * split_lr + (fam is not None)
    if n_tests == 0:
        raise ValueError(f"no test applies to {target.name} with attacks={attacks!r}")
    beta = side_level(confidence, n_tests)
    delta = float(target.delta)
    t0 = time.perf_counter()
    n_train = max(1000, int(train_fraction * trials)) if split_lr else 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=2 * (trials + n_train), desc=target.name, unit="trial", unit_scale=True, leave=False)
    events: list[tuple[str, np.ndarray, int, float | None]] = []  # (name, mask, positive input, expected bound)
    try:
        if model_lr:
            assert stat is not None and stat.pmf is not None  # what model_lr means
            p1, p2 = stat.pmf
            mask, e = choose_event(p1, p2, trials, beta=beta, delta=delta)
            events.append((f"lr {stat.name}", mask, 0, e))
            mask, e = choose_event(p2, p1, trials, beta=beta, delta=delta)
            events.append((f"lr-reverse {stat.name}", mask, 1, e))
        if split_lr:  # the event is chosen on separate training trials, never reused for evaluation
            assert stat is not None  # what split_lr means
            (t1, t2), _ = _simulate(target, n_train, rng, stat, None, bar, stat.n_codes)
            p1 = (t1 + 0.5) / (n_train + 0.5 * stat.n_codes)
            p2 = (t2 + 0.5) / (n_train + 0.5 * stat.n_codes)
            events.append((f"lr-split {stat.name}", choose_event(p1, p2, trials, beta=beta, delta=delta)[0], 0, None))
            events.append(
                (f"lr-split-reverse {stat.name}", choose_event(p2, p1, trials, beta=beta, delta=delta)[0], 1, None)
            )
        hists, fam_counts = _simulate(target, trials, rng, stat, fam, bar, stat.n_codes if stat else 1)
    finally:
        if bar is not None:
            bar.close()
    tests = []
    for name, mask, pos, expected in events:
        tp, fp = int(hists[pos][mask].sum()), int(hists[1 - pos][mask].sum())
        lb = float(epsilon_lower_bound(tp, fp, trials, beta=beta, delta=delta))
        tests.append(TestResult(name, tp, fp, trials, lb, expected))
    if fam is not None:
        tp, fp = fam_counts
        tests.append(
            TestResult(
                "family (LDP-Auditor guess = v1)",
                tp,
                fp,
                trials,
                float(epsilon_lower_bound(tp, fp, trials, beta=beta, delta=delta)),
            )
        )
    best = max(tests, key=lambda t: t.epsilon_lower_bound)
    lb = best.epsilon_lower_bound
    claimed = float(target.epsilon)
    finding = None
    if target.reference_epsilon is not None and lb > target.reference_epsilon:
        finding = (
            f"epsilon >= {lb:.4g} for whole tuples, above the per-attribute epsilon "
            f"{target.reference_epsilon:g} ({target.note})"
        )
    return AuditResult(
        target=target.name,
        epsilon_claimed=claimed,
        epsilon_lower_bound=lb,
        cap=measurable_cap(trials, beta=beta, delta=delta),
        trials=trials,
        confidence=confidence,
        violation=bool(lb > claimed * (1 + 1e-12)),
        delta=delta,
        k=int(target.k),
        best_test=best.name,
        tests=tuple(tests),
        finding=finding,
        seconds=time.perf_counter() - t0,
        params={**target.params(), "v1": _plain(target.v1), "v2": _plain(target.v2), "n_tests": n_tests, "seed": seed},
    )


def _plain(v):
    return [int(x) for x in v] if isinstance(v, (tuple, list, np.ndarray)) else int(v)
