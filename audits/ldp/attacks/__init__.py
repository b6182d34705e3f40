"""Attacks of the distinguishing game: LDP-Auditor's per-family guesses and likelihood-ratio tests.

Two kinds, both vectorized over trials (one row of ``reports`` per trial):

* **family attacks** (LDP-Auditor, Arcolezi and Gambs 2024): a guess x_hat in [k] per trial; the test event is
  "x_hat = v1". They return a bool array (guess == v1), drawing their random tie-breaks from ``rng``.
* **likelihood-ratio (Neyman-Pearson) tests**: a :class:`Statistic` maps every trial to a code of a small
  discrete statistic (e.g. (bit v1, bit v2) for unary encoding, (#reports = v1, #reports = v2) over tau
  longitudinal reports) whose exact distribution under v1 and v2 follows from the protocol's *claimed* output
  distribution. The event is {codes whose ratio P(code | v1)/P(code | v2) is above a threshold}; the threshold is
  chosen by :func:`dpkit.audits.ldp.bounds.choose_event` from the exact distribution alone, before any trial is run,
  so the bound is not biased by the choice. The event is tested in both directions (v1 against v2 and v2
  against v1), since a broken implementation may leak in the direction its model does not expect.
  When no exact distribution is known (``pmf is None``, e.g. a user's callable), the game chooses the event on a
  separate training split and evaluates it on fresh trials.

Both are registered per protocol class (``functools.singledispatch``): :mod:`.frequency_oracles` (one report),
:mod:`.longitudinal` (tau reports of one user), :mod:`.multidimensional` (one report of a tuple), :mod:`.numeric`
(one report of a bounded number); :mod:`.level_sampled` composes a level-sampled client's statistic and guess from
its levels' (range queries, heavy hitters). A new protocol adds one registration of each next to its family's attacks
(the exact distributions and guesses they are built from, ``pair_pmf``, ``trinomial_pmf``,
``guess_uniform_from_support`` and the rest, are in :mod:`.statistic`), e.g.::

    @fo_statistic.register(MyOracle)
    def _my_statistic(proto: MyOracle, v1: int, v2: int) -> Statistic: ...
"""

from dpkit.audits.ldp.attacks.frequency_oracles import fo_family_attack, fo_statistic
from dpkit.audits.ldp.attacks.level_sampled import level_family_attack, level_statistic
from dpkit.audits.ldp.attacks.longitudinal import longitudinal_family_attack, longitudinal_statistic
from dpkit.audits.ldp.attacks.multidimensional import multidimensional_family_attack, multidimensional_statistic
from dpkit.audits.ldp.attacks.numeric import numeric_family_attack, numeric_statistic
from dpkit.audits.ldp.attacks.statistic import FamilyAttack, Statistic

__all__ = [
    "Statistic",
    "FamilyAttack",
    "fo_statistic",
    "fo_family_attack",
    "level_statistic",
    "level_family_attack",
    "longitudinal_statistic",
    "longitudinal_family_attack",
    "multidimensional_statistic",
    "multidimensional_family_attack",
    "numeric_statistic",
    "numeric_family_attack",
]
