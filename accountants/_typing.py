"""Array type aliases of the accountants (numpy.typing): every array they compute with holds float64."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: A float64 array of any shape (grids of losses or orders, probability masses, RDP curves).
FloatArray = npt.NDArray[np.float64]

#: An array of indices.
IntArray = npt.NDArray[np.intp]
