"""Longitudinal protocols with memoization: L-GRR, L-SUE (basic RAPPOR), L-OUE, L-OSUE, L-SOUE, dBitFlipPM, LOLOHA.

Two rounds of randomization: a permanent randomized response (PRR) at the longitudinal budget ``eps_perm``
(epsilon_inf), memoized per user and per distinct memo key (the value; the hashed value for LOLOHA; the bucket
pattern for dBitFlipPM), then a fresh instantaneous randomized response (IRR) for every report, so that one report
is ``eps_1``-LDP. The per-user memo lives in a :class:`ClientPopulation`, which is serializable (``save``/``load``)
so a collection can continue another day with the same memoized responses.

What is protected: one user's whole sequence of values; neighbouring relation: replace the sequence.
Guarantees (pure, delta = 0):

* one report is ``eps_1``-LDP (L-GRR and LOLOHA with the paper calibration: at most ``eps_1``, exactly
  ``single_report_epsilon``; dBitFlipPM: ``epsilon``);
* after tau reports with m distinct memo keys a user has spent at most ``min(tau * eps_1, m * eps_perm)``
  (sequential composition of the reports, or of the memoized PRRs of which every report is post-processing);
  for LOLOHA m <= g, so the loss is bounded by ``g * eps_perm`` whatever the values; for dBitFlipPM m <= d + 1.
  ``privacy_spent(tau, m)`` returns it and ``longitudinal_event(tau, m)`` returns it as an accountants event.

Every protocol but dBitFlipPM is a pure frequency oracle for one round: P = p1 p2 + (1 - p1) q2 (own value),
Q = q1 p2 + (1 - q1) q2 (others; 1/g for LOLOHA), estimator (C/n - Q)/(P - Q) (Arcolezi et al., DCN 2022, Eq. 9).

One module per protocol family (:mod:`.grr`, :mod:`.unary_encoding`, :mod:`.loloha`, :mod:`.dbitflip`), the interface
(:mod:`.base`), the clients' memo (:mod:`.population`) and the registry by name (:mod:`.registry`).
"""

from dpkit.mechanisms.longitudinal.base import LongitudinalProtocol
from dpkit.mechanisms.longitudinal.dbitflip import DBitFlipPM
from dpkit.mechanisms.longitudinal.grr import LGRR, lgrr_round2
from dpkit.mechanisms.longitudinal.loloha import LOLOHA, loloha_optimal_g
from dpkit.mechanisms.longitudinal.population import ClientPopulation
from dpkit.mechanisms.longitudinal.registry import LONGITUDINAL_PROTOCOLS
from dpkit.mechanisms.longitudinal.unary_encoding import LOSUE, LOUE, LSOUE, LSUE, LUE

__all__ = [
    "LongitudinalProtocol",
    "LGRR",
    "LUE",
    "LSUE",
    "LOUE",
    "LOSUE",
    "LSOUE",
    "DBitFlipPM",
    "LOLOHA",
    "ClientPopulation",
    "LONGITUDINAL_PROTOCOLS",
    "loloha_optimal_g",
    "lgrr_round2",
]
