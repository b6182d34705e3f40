"""Multidimensional frequency estimation: SPL, SMP, RS+FD[GRR, OUE-z, OUE-r, SUE-z, SUE-r] and RS+RFD.

A user holds d categorical attributes (a row of a pandas DataFrame; attribute j has k_j categories, encoded as
integer codes by :func:`encode_dataframe`). Reports are a list of d arrays, one per attribute, each with one row per
user (SMP: a pair ``(attribute, reports)``, the reports of attribute j only from the users who sampled j).
``aggregate`` returns a :class:`MultiState` (one :class:`SupportCounts` per attribute, mergeable with ``+``) and
``estimate`` a list of d frequency vectors (``estimate_frame`` gives labelled pandas Series). ``postprocess`` is
applied per attribute: 'clip', 'norm-sub' or 'ibu' (SPL/SMP: the frequency oracle's own; RS+FD/RS+RFD: IBU on the
attribute's channel including the fake-data mixture, :meth:`RSFD.ibu`).

Guarantees, exactly (unit: one user's tuple; neighbouring relation as stated per class, ``neighbouring``):

* SPL: every attribute through an FO at epsilon/d: epsilon-LDP for the whole tuple (any change of the tuple).
* SMP: one sampled attribute through an FO at epsilon, the attribute index is public: epsilon-LDP for the tuple.
* RS+FD (Arcolezi et al. CIKM'21): the true attribute j is sampled and hidden among fake data; its FO runs at an
  amplified eps_amp. Guarantee: epsilon-LDP when ONE attribute changes. For tuples that differ in several
  attributes the bound is eps_amp (reached when all d differ): it is NOT epsilon-LDP for whole tuples.
  ``epsilon`` is the attribute-level guarantee, ``tuple_epsilon`` = eps_amp the tuple-level one.
  [!] The published eps' = ln(d (e^eps - 1) + 1) meets the attribute-level epsilon only for [OUE-z]/[SUE-z], for
  [GRR] with equal domain sizes and for [OUE-r]/[SUE-r] with every k_j = 2. dpkit computes the exact
  one-attribute loss in closed form and lowers eps_amp where eps' would overshoot, so the guarantee always holds.
* RS+RFD (Arcolezi et al. VLDB'23): RS+FD with fake data drawn from published priors; with non-uniform priors eps'
  overshoots even more (d = k = 2, eps = 1, priors (0.9, 0.1) give 1.4093); calibrated the same way.

Modules: :mod:`.base` (the interface, :class:`MultiState`, :func:`encode_dataframe`), :mod:`.per_attribute` (SPL,
SMP), :mod:`.rsfd` (RS+FD, RS+RFD).
"""

from dpkit.mechanisms.base import SupportCounts
from dpkit.mechanisms.multidimensional.base import MultidimensionalProtocol, MultiState, encode_dataframe
from dpkit.mechanisms.multidimensional.per_attribute import SMP, SPL
from dpkit.mechanisms.multidimensional.rsfd import RSFD, RSRFD

__all__ = [
    "MultiState",
    "encode_dataframe",
    "SPL",
    "SMP",
    "RSFD",
    "RSRFD",
    "MultidimensionalProtocol",
    "SupportCounts",
]
