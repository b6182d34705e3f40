"""Data poisoning of local-DP protocols: attacks, their closed-form gains, countermeasures, range queries.

An LDP server cannot check a report (randomization is the point), so fake users can send crafted reports that
push chosen items or ranges up. This package lets a data collector measure that on their own protocol and data:

* :mod:`.threat`: the threat model (fake fraction beta, targets) and its checks;
* :mod:`.scores`: how a report counts for an item (support sets, its score in the unbiased estimate);
* :mod:`.attacks`: RPA, RIA and MGA (Cao, Jia, Gong, USENIX Security 2021) on every frequency oracle, with the
  closed-form expected gain of the crafted reports;
* :mod:`.longitudinal`: the same attacks against memoizing protocols, with fake users whose memoized responses
  stay consistent over collections; :mod:`.multidimensional`: against RS+FD;
* :mod:`.range_queries`: poisoning of hierarchical histograms and HIO (Liao et al., arXiv 2503.03454), before and
  after consistency and Norm-Sub;
* :mod:`.defenses`: normalization, frequent-itemset detection, conditional-probability detection;
* :mod:`.simulation`: :func:`simulate` -> :class:`PoisoningResult` (simulated and analytic gain), :func:`gain_table`.

Attacks, scores and detectors are registered per protocol class (``functools.singledispatch``): a new protocol adds
one registration of each next to its family's. The ASR-MSE refined protocols that trade an attacker's success on
one report against utility are :mod:`dpkit.mechanisms.frequency_oracles.refined`.
"""

from dpkit.audits.poisoning.attacks import ATTACKS, FakeReports, mga, ria, rpa, search_hash_functions
from dpkit.audits.poisoning.defenses import (
    Detection,
    conditional_probability_detector,
    default_detector,
    itemset_detector,
    support_bound,
)
from dpkit.audits.poisoning.longitudinal import FakeMemo, crafted_memo, simulate_longitudinal
from dpkit.audits.poisoning.multidimensional import rsfd_attack, simulate_rsfd
from dpkit.audits.poisoning.range_queries import RangePoisoningResult, level_targets, range_attack, simulate_range
from dpkit.audits.poisoning.scores import item_support, n_items, report_scores, true_frequencies
from dpkit.audits.poisoning.simulation import (
    DEFENSES,
    FakeAggregate,
    PoisoningResult,
    aggregate_fakes,
    check_attack,
    gain_table,
    simulate,
)
from dpkit.audits.poisoning.threat import check_fake_fraction, check_targets, fake_count, random_targets

__all__ = [
    "ATTACKS",
    "DEFENSES",
    "Detection",
    "FakeAggregate",
    "FakeMemo",
    "FakeReports",
    "PoisoningResult",
    "RangePoisoningResult",
    "aggregate_fakes",
    "check_attack",
    "check_fake_fraction",
    "check_targets",
    "conditional_probability_detector",
    "crafted_memo",
    "default_detector",
    "fake_count",
    "gain_table",
    "item_support",
    "itemset_detector",
    "level_targets",
    "mga",
    "n_items",
    "random_targets",
    "range_attack",
    "report_scores",
    "ria",
    "rpa",
    "rsfd_attack",
    "search_hash_functions",
    "simulate",
    "simulate_longitudinal",
    "simulate_range",
    "simulate_rsfd",
    "support_bound",
    "true_frequencies",
]
