"""dpkit's LDP auditor on the clients of the range-query and heavy-hitter protocols (``audit_targets``): no violation
in any of them, bounds close to the claim (the tests have power), and a leaky client is caught."""

import dataclasses

import numpy as np
import pytest

from dpkit.audits.ldp import LevelTarget, ProtocolTarget, audit, audit_targets
from dpkit.audits.ldp.attacks import fo_statistic
from dpkit.mechanisms import OUE
from dpkit.mechanisms.heavy_hitters import PEM, SFP, TAP, CandidateHashing, TreeHist
from dpkit.mechanisms.range_queries import HH, HIO, FlatRange, HaarHRR, HaarLevel

TRIALS = 20_000

PROTOCOLS = [
    HH(64, 1.0),  # levels GRR(4), OUE(16), OUE(64)
    HH(27, 2.0, branching=3, oracle="OLH"),
    HaarHRR(64, 1.0),
    FlatRange(16, 0.5),
    HaarLevel(8, 1.0),
    CandidateHashing(1.0),
    PEM(12, 1.0, k=4),
    TreeHist(12, 1.0, k=4, step=3),
    SFP(12, 1.0, k=4, fragment_bits=4, hash_bits=4),
    SFP(12, 2.0, k=4, fragment_bits=4, hash_bits=4, fragment_oracle="OLH"),
    TAP(12, 1.0, k=4),
    HIO(("a", "b"), (8, 5), 1.0, categorical=("b",), branching=2),  # adaptive: GRR and OLH layers
    HIO(("a", "b", "c"), (4, 4, 4), 2.0, oracle="OUE"),
]


def _cases():
    for proto in PROTOCOLS:
        for target in audit_targets(proto):
            yield pytest.param(target, id=f"{target.name}:{proto!r}"[:80])


@pytest.mark.parametrize("target", list(_cases()))
def test_no_violation_and_power(target):
    r = audit(target, TRIALS, seed=3)
    assert not r.violation, r.verdict
    # The exact likelihood-ratio event's expected bound at this many trials is within ~15% of the claim; a bound
    # far below would mean the statistic does not fit the client (no power).
    assert r.epsilon_lower_bound > 0.7 * r.epsilon_claimed
    assert r.epsilon_lower_bound <= r.epsilon_claimed


def test_composed_protocols_audit_each_share():
    shares = [t.epsilon for t in audit_targets(TreeHist(12, 1.0, k=4, step=3))]
    assert shares == [0.5, 0.5]
    assert [t.epsilon for t in audit_targets(SFP(12, 1.0, k=4, fragment_bits=4, hash_bits=4))] == [0.5, 0.5]
    assert isinstance(audit_targets(OUE(8, 1.0))[0], ProtocolTarget)
    assert isinstance(audit_targets(PEM(12, 1.0, k=4))[0], LevelTarget)


def test_unregistered_protocol_is_refused():
    with pytest.raises(TypeError, match="no audit target is registered for object"):
        audit_targets(object())


@dataclasses.dataclass(frozen=True)
class _LeakyHashing(CandidateHashing):
    """Claims CandidateHashing at epsilon but keeps the true bucket as often as at 2 epsilon."""

    def perturb(self, keys, rng):
        honest = CandidateHashing(2 * self.epsilon, g=self.g)
        return honest.perturb(keys, rng)


@dataclasses.dataclass(frozen=True)
class _LeakyHaar(HaarLevel):
    """Claims HaarLevel at epsilon but reports the true sign with the probability of 2 epsilon."""

    def perturb(self, values, rng):
        return HaarLevel(self.m, 2 * self.epsilon).perturb(values, rng)


@dataclasses.dataclass(frozen=True)
class _LeakyHIO(HIO):
    """Claims HIO at epsilon but runs its layer oracles at 2 epsilon."""

    def perturb(self, values, rng):
        return HIO(self.columns, self.domains, 2 * self.epsilon, branching=self.branching, oracle="GRR").perturb(
            values, rng
        )


def test_hio_target_uses_whole_rows():
    (target,) = audit_targets(HIO(("a", "b"), (8, 5), 1.0, branching=2))
    assert (target.v1, target.v2, target.k) == ((0, 0), (7, 4), 8)
    assert len(target.levels) == 4 * 4 - 1  # every layer but the all-'*' one: levels (0..3) x (0..3) less (0, 0)
    assert all(a != b for _, a, b in target.levels)  # the two rows fall in different cells of every layer
    reports = target.sample(1, 1000, np.random.default_rng(0))
    assert sum(len(r) for r in reports) == 1000  # one report per trial, at one layer


@pytest.mark.parametrize(
    "leaky",
    [_LeakyHashing(1.0), _LeakyHaar(4, 1.0), _LeakyHIO(("a", "b"), (4, 4), 1.0, branching=2, oracle="GRR")],
    ids=["candidate-hashing", "haar-level", "hio"],
)
def test_leaky_level_client_is_caught(leaky):
    r = audit(audit_targets(leaky)[0], TRIALS, seed=4)
    assert r.violation
    assert r.epsilon_lower_bound > 1.5  # the true epsilon is 2


def test_haar_level_statistic_law_matches_the_client():
    # the statistic's exact law against the client's empirical code frequencies (5 sigma per code)
    proto, n = HaarLevel(8, 1.0), 200_000
    stat = fo_statistic(proto, 3, 12)
    for which, v in enumerate((3, 12)):
        codes = stat.codes(proto.perturb(np.full(n, v), np.random.default_rng(which)))
        freq = np.bincount(codes, minlength=4) / n
        pmf = stat.pmf[which]
        assert np.all(np.abs(freq - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / n) + 1e-12)
