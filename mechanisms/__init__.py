"""Local differential privacy protocols and noise primitives (on the roadmap; nothing here yet).

This package will hold the randomizers a client runs on its own data (randomized response, unary encoding,
local hashing, their longitudinal, multidimensional, heavy-hitter and range-query variants) with the
server-side estimators that decode them, and the noise primitives (Gaussian, Laplace, discrete samplers) that
the training code and the protocols share. Each mechanism will describe its privacy cost as an ``accountants``
event.
"""
