"""Strategies by name, and saving / loading them (parameters re-validated on load)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpkit.mechanisms.matrix_factorization import (
    FixedEpoch,
    available_strategies,
    load_strategy,
    make_strategy,
    save_strategy,
    strategy_from_dict,
)

OPTIONS = {"nu-dp-ftrl": {"nu": 0.05}, "banded-toeplitz": {"bands": 4}, "banded": {"bands": 3}, "blt": {"buffers": 2}}


@pytest.mark.parametrize("name", available_strategies())
def test_every_strategy_builds_evaluates_and_round_trips(name, tmp_path):
    n, schema = 24, FixedEpoch(2, 12)
    s = make_strategy(name, n, participation=schema, **OPTIONS.get(name, {}))
    report = s.evaluate(schema)
    assert report.n == n and report.rmse > 0 and report.sensitivity.value > 0
    assert json.loads(json.dumps(report.to_dict(per_query=True)))["rmse"] == report.rmse
    for loaded in (strategy_from_dict(json.loads(json.dumps(s.to_dict()))), None):
        if loaded is None:
            save_strategy(tmp_path / "s.npz", s)
            loaded = load_strategy(tmp_path / "s.npz")
        assert type(loaded) is type(s)
        np.testing.assert_array_equal(loaded.strategy_matrix(), s.strategy_matrix())
        assert loaded.evaluate(schema).rmse == report.rmse
        assert loaded.noising_recurrence().fingerprint() == s.noising_recurrence().fingerprint()


def test_dp_sgd_is_the_worst_and_dense_the_best():
    n, schema = 60, FixedEpoch(3, 20)
    rmse = {
        name: make_strategy(name, n, participation=schema, **OPTIONS.get(name, {})).evaluate(schema).rmse
        for name in available_strategies()
    }
    assert max(rmse, key=rmse.get) == "dp-sgd"
    assert min(rmse, key=rmse.get) == "dense"


def test_unknown_kind_on_load():
    with pytest.raises(ValueError, match="unknown strategy kind 'tree'"):
        strategy_from_dict({"kind": "tree"})
    with pytest.raises(ValueError, match="needs a 'kind' key"):
        strategy_from_dict({})


@pytest.mark.parametrize("name", available_strategies())
def test_reported_noise_memory_is_the_stream_state(name):
    s = make_strategy(name, 24, participation=FixedEpoch(2, 12), **OPTIONS.get(name, {}))
    assert s.noise_memory == s.noising_recurrence().memory
    assert s.evaluate(FixedEpoch(2, 12)).noise_memory == s.noise_memory
