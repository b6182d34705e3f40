"""Every public entry point of private training, walked with NaN, inf, zero, negative, huge, wrong-type values and
damaged files: each gives a clear error naming the parameter, its value and the allowed range (or the documented
result), raised before any state changes."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import parameters_of, unchanged
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import dpkit
from dpkit.checkpoint import CheckpointError
from dpkit.data import PoissonBatchSampler, poisson_data_loader
from dpkit.noise import GaussianNoise
from dpkit.optimizer import DPOptimizer

NAN, INF = math.nan, math.inf


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(5), 0


def dataset(n=40):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def arguments(**overrides):
    model = mlp()
    kwargs = dict(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(dataset(), batch_size=8),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    kwargs.update(overrides)
    return kwargs


def trained(engine_name="auto", steps=2):
    engine = dpkit.PrivacyEngine(seed=1, grad_sample_engine=engine_name)
    m, o, dl = engine.make_private(**arguments())
    for _, (x, y) in zip(range(steps), dl, strict=False):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    return engine, m, o, dl


# ---------------------------------------------------------------------------------------------- PrivacyEngine
SEED = r"seed must be None or a whole number in \[0, 2\*\*64 - 1\], got "


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seed": -1}, ValueError, SEED + "-1"),
        ({"seed": 2**64}, ValueError, SEED + str(2**64)),
        ({"seed": 1.5}, TypeError, SEED + "1.5"),
        ({"seed": NAN}, TypeError, SEED + "nan"),
        ({"seed": "3"}, TypeError, SEED + "'3'"),
        ({"seed": True}, TypeError, SEED + "True"),
        ({"accountant": None}, ValueError, r"accountant must be one of \['pld', 'rdp'\], got None"),
        ({"accountant": "PLD"}, ValueError, "accountant must be one of"),
        ({"secure_rng": 1}, TypeError, "secure_rng must be True or False, got 1"),
        ({"secure_rng": True, "seed": 3}, ValueError, "seed must be None with secure_rng=True"),
        ({"grad_sample_engine": "opacus"}, ValueError, r"grad_sample_engine must be one of \['bookkeeping'"),
        ({"grad_sample_engine": None}, ValueError, "grad_sample_engine must be one of"),
    ],
)
def test_privacy_engine_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        dpkit.PrivacyEngine(**kwargs)


def test_the_largest_seed_is_usable():
    engine = dpkit.PrivacyEngine(seed=2**64 - 1)
    m, o, dl = engine.make_private(**arguments())
    x, y = next(iter(dl))
    nn.functional.cross_entropy(m(x), y).backward()
    o.step()
    assert engine.steps == 1


# ---------------------------------------------------------------------------------------------- make_private
EPS = {"noise_multiplier": None, "target_delta": 1e-5, "epochs": 1}


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"noise_multiplier": NAN}, ValueError, r"noise_multiplier must be in \[0, inf\), got nan"),
        ({"noise_multiplier": INF}, ValueError, r"noise_multiplier must be in \[0, inf\), got inf"),
        ({"noise_multiplier": -1.0}, ValueError, r"noise_multiplier must be in \[0, inf\), got -1.0"),
        ({"noise_multiplier": 1e300}, ValueError, r"noise_multiplier \* max_grad_norm / expected batch size"),
        ({"noise_multiplier": "1"}, TypeError, "noise_multiplier must be a real number, got '1'"),
        ({"max_grad_norm": NAN}, ValueError, r"max_grad_norm must be in \(0, inf\), got nan"),
        ({"max_grad_norm": INF}, ValueError, r"max_grad_norm must be in \(0, inf\), got inf"),
        ({"max_grad_norm": 0}, ValueError, r"max_grad_norm must be in \(0, inf\), got 0"),
        ({"max_grad_norm": -0.5}, ValueError, r"max_grad_norm must be in \(0, inf\), got -0.5"),
        ({"max_grad_norm": 1e300}, ValueError, r"noise_multiplier \* max_grad_norm / expected batch size"),
        ({"max_grad_norm": True}, TypeError, "max_grad_norm must be a real number, got True"),
        ({"max_grad_norm": [1.0] * 4}, TypeError, "max_grad_norm must be a real number"),
        (
            {"max_grad_norm": [1.0, NAN, 1.0, 1.0], "clipping": "per_layer"},
            ValueError,
            r"max_grad_norm\[1\] must be in \(0, inf\), got nan",
        ),
        ({**EPS, "target_epsilon": NAN}, ValueError, r"target_epsilon must be in \(0, inf\), got nan"),
        ({**EPS, "target_epsilon": INF}, ValueError, r"target_epsilon must be in \(0, inf\), got inf"),
        ({**EPS, "target_epsilon": -1}, ValueError, r"target_epsilon must be in \(0, inf\), got -1"),
        ({**EPS, "target_epsilon": 1, "target_delta": NAN}, ValueError, r"target_delta must be in \(0, 1\), got nan"),
        ({**EPS, "target_epsilon": 1, "target_delta": 0}, ValueError, r"target_delta must be in \(0, 1\), got 0"),
        ({**EPS, "target_epsilon": 1, "epochs": NAN}, ValueError, r"epochs must be in \(0, inf\), got nan"),
        ({**EPS, "target_epsilon": 1, "epochs": -2}, ValueError, r"epochs must be in \(0, inf\), got -2"),
        ({**EPS, "target_epsilon": 1, "epochs": 1e15}, ValueError, "needs a noise multiplier above max_noise"),
        ({"max_physical_batch_size": 0}, ValueError, "max_physical_batch_size must be a whole number >= 1, got 0"),
        ({"max_physical_batch_size": -3}, ValueError, "max_physical_batch_size must be a whole number >= 1, got -3"),
        ({"max_physical_batch_size": 2.5}, TypeError, "max_physical_batch_size must be a whole number >= 1, got 2.5"),
        ({"clipping": None}, ValueError, r"clipping must be one of \('flat', 'per_layer'\), got None"),
        ({"loss_reduction": "none"}, ValueError, r"loss_reduction must be one of \('mean', 'sum'\), got 'none'"),
        ({"poisson_sampling": "yes"}, TypeError, "poisson_sampling must be True or False, got 'yes'"),
        ({**EPS, "target_epsilon": 0.0}, ValueError, r"target_epsilon must be in \(0, inf\), got 0.0"),
        ({**EPS, "target_epsilon": 1, "target_delta": 1.0}, ValueError, r"target_delta must be in \(0, 1\), got 1.0"),
        ({**EPS, "target_epsilon": 1, "epochs": 0}, ValueError, r"epochs must be in \(0, inf\), got 0"),
        ({"noise_multiplier": None, "target_epsilon": 1.0}, ValueError, "target_epsilon needs target_delta"),
        ({"target_epsilon": 1.0}, ValueError, "give exactly one of noise_multiplier"),
        ({"noise_multiplier": None}, ValueError, "give exactly one of noise_multiplier"),
        ({"epochs": 3}, ValueError, "epochs and target_delta are only used with target_epsilon"),
        ({"clipping": "adaptive"}, ValueError, r"clipping must be one of \('flat', 'per_layer'\), got 'adaptive'"),
        ({"max_grad_norm": [1.0, 2.0], "clipping": "per_layer"}, ValueError, "2 per-layer thresholds but"),
        ({"data_loader": DataLoader(Stream(), batch_size=2)}, TypeError, "IterableDataset"),
        ({"data_loader": [1, 2]}, TypeError, "data_loader must be a torch.utils.data.DataLoader"),
        (
            {"optimizer": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)},
            ValueError,
            r"optimizer.param_groups\[0\]\['params'\]\[0\] \(shape \(2, 2\)\) is not a parameter of module",
        ),
        ({"module": None}, TypeError, "module must be a torch.nn.Module, got NoneType"),
        ({"module": "model"}, TypeError, "module must be a torch.nn.Module, got str"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must be a plain torch.optim.Optimizer, got str"),
        ({"data_loader": dataset()}, TypeError, "data_loader must be a torch.utils.data.DataLoader"),
        (
            {"data_loader": DataLoader(TensorDataset(torch.zeros(0, 5)), batch_size=2)},
            ValueError,
            r"data_loader.dataset must not be empty, got len\(dataset\)=0",
        ),
    ],
)
def test_make_private_refuses_before_changing_anything(overrides, error, match):
    kwargs = arguments(**overrides)
    engine = dpkit.PrivacyEngine(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            engine.make_private(**kwargs)
    assert engine.optimizer is None and engine.engine is None and engine.budget is None
    module, optimizer = kwargs["module"], kwargs["optimizer"]
    if isinstance(module, nn.Module):
        assert not any("forward" in m.__dict__ for m in module.modules()), "the module is left as it was"
    if isinstance(optimizer, torch.optim.Optimizer):
        assert not optimizer._optimizer_step_pre_hooks, "the optimizer is left as it was"
    engine.make_private(**arguments())  # the engine is still usable


def test_make_private_once_per_engine():
    engine = dpkit.PrivacyEngine(seed=0)
    engine.make_private(**arguments())
    with pytest.raises(RuntimeError, match="make_private was already called on this PrivacyEngine"):
        engine.make_private(**arguments())


# ---------------------------------------------------------------------------------------------- the training step
@pytest.mark.parametrize("engine_name", ["bookkeeping", "functorch"])
@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(5), r"batched|\[batch, \.\.\.\]"),  # one example without its batch dimension
        (torch.tensor(1.0), "needs a tensor argument whose first dimension is the batch"),
    ],
    ids=["1-D", "0-D"],
)
def test_an_unbatched_input_is_refused_at_the_forward(engine_name, x, match):
    engine, m, o, _ = trained(engine_name, steps=0)
    before = parameters_of(m)
    o.zero_grad()
    with pytest.raises(ValueError, match=match) as info:
        m(x).sum().backward()
        o.step()
    assert "\n" not in str(info.value)
    assert engine.steps == 0 and unchanged(m, before)
    x, y = dataset().tensors
    o.zero_grad()
    nn.functional.cross_entropy(m(x[:4]), y[:4]).backward()  # a batched input still trains
    o.step()
    assert engine.steps == 1


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 3), nn.Linear(5, 3)

    def forward(self, x, z):
        return self.a(x) + self.b(z).sum(0)  # z's first dimension is not the batch: a layer sees another batch


def test_a_layer_seeing_another_batch_size_is_refused():
    model = TwoInputs()
    engine = dpkit.PrivacyEngine(seed=0, grad_sample_engine="bookkeeping")
    m, o, _ = engine.make_private(**arguments(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    with pytest.raises(
        ValueError, match=r"module b \(Linear\) returned shape \(4, 3\), not \[batch, ...\] with batch = 6"
    ):
        m(torch.randn(6, 5), torch.randn(4, 5))


def test_step_arguments():
    engine, m, o, dl = trained(steps=0)
    with pytest.raises(TypeError, match="closure must be None or a callable returning the loss, got 3"):
        o.step(3)
    with pytest.raises(RuntimeError, match="parameters cannot be added to a DP optimizer"):
        o.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})
    assert engine.steps == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"expected_batch_size": NAN}, ValueError, r"expected_batch_size must be in \(0, inf\), got nan"),
        ({"expected_batch_size": INF}, ValueError, r"expected_batch_size must be in \(0, inf\), got inf"),
        ({"expected_batch_size": 0}, ValueError, r"expected_batch_size must be in \(0, inf\), got 0"),
        ({"sample_rate": NAN}, ValueError, r"sample_rate must be in \(0, 1\], got nan"),
        ({"sample_rate": 0.0}, ValueError, r"sample_rate must be in \(0, 1\], got 0.0"),
        ({"sample_rate": 1.5}, ValueError, r"sample_rate must be in \(0, 1\], got 1.5"),
        ({"noise_multiplier": -1}, ValueError, r"noise_multiplier must be in \[0, inf\), got -1"),
        ({"noise_multiplier": 1e40}, ValueError, r"noise_multiplier \* max_grad_norm"),
    ],
)
def test_dp_optimizer_construction(kwargs, error, match):
    engine, m, o, _ = trained(steps=0)
    original = torch.optim.SGD(m.parameters(), lr=0.1)
    settings = dict(
        engine=o.engine, clipping=o.clipping, noise_multiplier=1.0, expected_batch_size=8, sample_rate=0.2,
        noise=engine.noise,
    )  # fmt: skip
    settings.update(kwargs)
    with pytest.raises(error, match=match):
        DPOptimizer(original, **settings)
    assert not original._optimizer_step_pre_hooks
    with pytest.raises(TypeError, match="optimizer must be a plain torch.optim.Optimizer, got DPOptimizer"):
        DPOptimizer(o, **{**settings, **dict(expected_batch_size=8, sample_rate=0.2, noise_multiplier=1.0)})


# ---------------------------------------------------------------------------------------------- loader / sampler
@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((0, 0.5, 3), {}, ValueError, "num_samples must be a whole number >= 1, got 0"),
        ((10, NAN, 3), {}, ValueError, r"sample_rate must be in \(0, 1\], got nan"),
        ((10, INF, 3), {}, ValueError, r"sample_rate must be in \(0, 1\], got inf"),
        ((10, 0, 3), {}, ValueError, r"sample_rate must be in \(0, 1\], got 0"),
        ((10, -0.1, 3), {}, ValueError, r"sample_rate must be in \(0, 1\], got -0.1"),
        ((10, "0.5", 3), {}, TypeError, "sample_rate must be a real number, got '0.5'"),
        ((10, 0.5, 0), {}, ValueError, "steps_per_epoch must be a whole number >= 1, got 0"),
        ((10, 0.5, 3), {"seed": -1}, ValueError, SEED + "-1"),
        ((10, 0.5, 3), {"seed": 2**70}, ValueError, SEED + str(2**70)),
        ((10, 0.5, 3), {"secure": "no"}, TypeError, "secure must be True or False, got 'no'"),
        ((10, 0.5, 3), {"secure": True, "seed": 1}, ValueError, "seed must be None with secure=True"),
    ],
)
def test_poisson_batch_sampler(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        PoissonBatchSampler(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sample_rate": 0.0}, ValueError, r"sample_rate must be in \(0, 1\], got 0.0"),
        ({"sample_rate": NAN}, ValueError, r"sample_rate must be in \(0, 1\], got nan"),
        ({"sample_rate": 2}, ValueError, r"sample_rate must be in \(0, 1\], got 2"),
        ({"seed": -5}, ValueError, SEED + "-5"),
        ({"secure": None}, TypeError, "secure must be True or False, got None"),
    ],
)
def test_poisson_data_loader(kwargs, error, match):
    with pytest.raises(error, match=match):
        poisson_data_loader(DataLoader(dataset(), batch_size=8), **kwargs)


@pytest.mark.parametrize(
    "state, match",
    [
        (None, "sampler state must be a dict with keys seed, position, secure"),
        ({"seed": 3, "position": 1}, "sampler state must be a dict with keys"),
        ({"seed": 3, "position": -1, "secure": False}, "sampler state.position must be a whole number >= 0, got -1"),
        ({"seed": 3, "position": 1.5, "secure": False}, "sampler state.position must be a whole number >= 0"),
        ({"seed": -3, "position": 1, "secure": False}, r"sampler state.seed must be a whole number in \[0, 2\*\*64"),
        ({"seed": 3, "position": 1, "secure": True}, "sampler state has secure=True, but this one has secure=False"),
    ],
)
def test_sampler_state_is_validated_before_it_is_assigned(state, match):
    sampler = PoissonBatchSampler(10, 0.5, 3, seed=4)
    list(sampler)
    with pytest.raises((ValueError, TypeError), match=match):
        sampler.load_state_dict(state)
    assert (sampler.seed, sampler.position) == (4, 3)


@pytest.mark.parametrize(
    "state, match",
    [
        ({"seed": None, "secure": False}, r"noise state.seed must be a whole number in \[0, 2\*\*64 - 1\], got None"),
        ({"seed": -1, "secure": False}, "noise state.seed must be a whole number"),
        ({"seed": 1, "secure": "no"}, "noise state has secure='no'"),
        ([], "noise state must be a dict with keys seed, secure"),
    ],
)
def test_noise_state_and_seed(state, match):
    noise = GaussianNoise(5)
    with pytest.raises((ValueError, TypeError), match=match):
        noise.load_state_dict(state)
    assert noise.seed == 5
    with pytest.raises(ValueError, match=SEED + "-1"):
        GaussianNoise(-1)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: GaussianNoise(1).fill_(torch.empty(4), -1.0, 0), r"std must be in \[0, inf\), got -1.0"),
        (lambda: GaussianNoise(1).fill_(torch.empty(4), NAN, 0), r"std must be in \[0, inf\), got nan"),
        (lambda: GaussianNoise(1).fill_(torch.empty(4), 1.0, -2), "step must be a whole number >= 0, got -2"),
        (lambda: GaussianNoise(1).fill_(torch.empty(2, 2), 1.0, 0), r"buf must be a flat \(1-D\) tensor"),
        (lambda: GaussianNoise(1).draw([torch.empty(3)], INF, 0), r"std must be in \[0, inf\), got inf"),
        (lambda: PoissonBatchSampler(10, 0.5, 2, seed=1).draw(-1), "index must be a whole number >= 0, got -1"),
    ],
)
def test_noise_and_batch_draws(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_optimizer_state_is_validated_before_it_is_assigned():
    engine, m, o, _ = trained(steps=1)
    state = o.state_dict()
    before = repr(o.state_dict())
    with pytest.raises(ValueError, match=r"optimizer state has parameter groups of sizes \[4, 4\]"):
        o.load_state_dict({**state, "param_groups": state["param_groups"] * 2})
    with pytest.raises(ValueError, match="optimizer state must be a dict with 'state' and 'param_groups'"):
        o.load_state_dict({"param_groups": state["param_groups"]})
    assert repr(o.state_dict()) == before


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("path", [None, 3, b"ck.pt", ["ck.pt"]])
def test_checkpoint_paths_must_be_paths(tmp_path, path):
    engine, m, o, _ = trained(steps=1)
    with pytest.raises(TypeError, match=r"path must be a file path \(str or os.PathLike\), got "):
        engine.save_checkpoint(path, model=m, optimizer=o)
    with pytest.raises(TypeError, match=r"path must be a file path \(str or os.PathLike\), got "):
        engine.load_checkpoint(path, model=m, optimizer=o)


def test_checkpoint_arguments(tmp_path):
    engine, m, o, _ = trained(steps=1)
    with pytest.raises(FileNotFoundError, match="directory .*nowhere does not exist"):
        engine.save_checkpoint(tmp_path / "nowhere" / "ck.pt", model=m, optimizer=o)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got OrderedDict"):
        engine.save_checkpoint(tmp_path / "ck.pt", model=m.state_dict(), optimizer=o)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got NoneType"):
        engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=None)
    with pytest.raises(TypeError, match=r"extra\['bad'\]\[0\] must hold only None, bools"):
        engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o, extra={"bad": [object()]})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="call make_private before saving the engine state"):
        dpkit.PrivacyEngine(seed=0).save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
    engine.save_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)
    (tmp_path / "short.pt").write_bytes((tmp_path / "ck.pt").read_bytes()[:100])  # a truncated file
    steps, before = engine.steps, parameters_of(m)
    with pytest.raises(CheckpointError, match=r"short.pt is not a readable checkpoint \(truncated or not a"):
        engine.load_checkpoint(tmp_path / "short.pt", model=m, optimizer=o)
    assert engine.steps == steps and unchanged(m, before)
    with pytest.raises(RuntimeError, match="call make_private"):
        dpkit.PrivacyEngine(seed=0).load_checkpoint(tmp_path / "ck.pt", model=m, optimizer=o)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: None, "engine state must be a dict with keys"),
        (lambda s: {**s, "steps": -1}, "engine state steps must be a whole number >= 0, got -1"),
        (lambda s: {**s, "steps": NAN}, "engine state steps must be a whole number >= 0, got nan"),
        (lambda s: {**s, "config": {}}, "engine state config must have the keys"),
        (lambda s: {**s, "config": {**s["config"], "sample_rate": 0.5}}, "checkpoint was made with sample_rate=0.5"),
        (lambda s: {**s, "config": {**s["config"], "clipping": 1}}, "checkpoint was made with clipping=1"),
        (lambda s: {**s, "noise": {"seed": "x", "secure": False}}, "engine state noise.seed must be a whole number"),
        (lambda s: {**s, "accountant": {"accountant": "pld"}}, "engine state accountant"),
        (lambda s: {**s, "budget": {}}, "budget"),
        (lambda s: {**s, "nonfinite_examples": -2}, "nonfinite_examples must be a whole number >= 0"),
    ],
)
def test_engine_state_is_validated_before_it_is_assigned(change, match):
    engine, m, o, dl = trained(steps=2)
    state = engine.state_dict()
    sampler = dl.batch_sampler
    before = (engine.steps, engine.get_epsilon(1e-5), engine.noise.seed, sampler.seed, sampler.position)
    with pytest.raises((ValueError, TypeError), match=match):
        engine.load_state_dict(change(state))
    assert (engine.steps, engine.get_epsilon(1e-5), engine.noise.seed, sampler.seed, sampler.position) == before
    engine.load_state_dict(state)


# ---------------------------------------------------------------------------------------------- fix_module, epsilon
@pytest.mark.parametrize("module", [None, "model", nn.Linear(2, 2).state_dict()])
def test_fix_module_needs_a_module(module):
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got "):
        dpkit.fix_module(module)


@pytest.mark.parametrize(
    "delta, error, match",
    [
        (NAN, ValueError, r"delta must be in \(0, 1\), got nan"),
        (INF, ValueError, r"delta must be in \(0, 1\), got inf"),
        (0, ValueError, r"delta must be in \(0, 1\), got 0"),
        (-1e-5, ValueError, r"delta must be in \(0, 1\), got -1e-05"),
        (1, ValueError, r"delta must be in \(0, 1\), got 1"),
        ("1e-5", TypeError, "delta must be a real number, got '1e-5'"),
        (None, TypeError, "delta must be a real number, got None"),
    ],
)
def test_get_epsilon(delta, error, match):
    engine, *_ = trained(steps=1)
    with pytest.raises(error, match=match):
        engine.get_epsilon(delta)
    assert 0 < engine.get_epsilon(1e-5) < math.inf
    assert dpkit.PrivacyEngine(seed=0).get_epsilon(1e-5) == 0.0  # nothing spent before make_private
