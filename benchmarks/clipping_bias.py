"""Clipping bias: DP-SGD, adaptive clipping and DiceSGD at the same epsilon, across clipping norms.

Data: scikit-learn's digits (1,437 training and 360 test images, 64 pixels in [0, 1]), as bundled by
``dpkit.datasets.load_digits``. Model: multinomial logistic regression (``nn.Linear(64, 10)``, zero start) with L2
regularisation ``lambda / 2 ||theta||^2`` applied by the optimizer (``weight_decay``, data-independent, outside
clipping), so the non-private optimum theta* exists and is unique; it is computed by L-BFGS on the full training
set. At theta* the per-example gradient norms range from about 0.02 (1st percentile) to 3.6 (99th): whatever the
clipping norm, some examples are clipped and some are not, which is where clipping biases the fixed point.

Every cell trains with plain SGD (the same learning rate and weight decay everywhere), Poisson batches of expected
size ``--batch-size``, for ``--epochs`` epochs, with the noise calibrated by dpkit's PLD accountant to
(``--epsilon``, 1e-5) over those epochs:

* ``dpsgd``: DP-SGD with ``max_grad_norm=C1``;
* ``adaptive``: adaptive clipping (Andrew et al. 2021), started at ``C1``, target quantile 0.5, learning rate 0.2,
  count noise B / 20, its count charged to the same budget (the combined noise multiplier);
* ``dicesgd``: DiceSGD (Zhang et al. 2024) with ``C2 = C1`` and the authors' noise inflation sqrt(1 + 2 C2 / C1):
  its epsilon is the authors' claim, which dpkit's accountant does not verify (see ``dpkit.error_feedback``).

For every (method, C1) the script reports, over ``--seeds`` seeds, the test accuracy (mean and standard
deviation), the distance ``||theta_T - theta*||`` of the final model from the non-private optimum, and the
regularised training loss; the non-private optimum's own accuracy and loss are the reference.

    python benchmarks/clipping_bias.py                 # C1 in {0.01, 0.1, 1, 10}, 3 seeds
    python benchmarks/clipping_bias.py --quick         # C1 in {0.1, 1}, 1 seed
"""

from __future__ import annotations

import statistics
import sys
import warnings
from typing import Any

import harness

METHODS = ("dpsgd", "adaptive", "dicesgd")
LABELS = {"dpsgd": "DP-SGD", "adaptive": "adaptive clipping", "dicesgd": "DiceSGD (C2 = C1)"}
DELTA = 1e-5
WEIGHT_DECAY = 1e-3


def digits():
    """(train x, train y, test x, test y) with flattened images."""
    from dpkit.datasets import load_digits

    train, test = load_digits(seed=0)
    return train.tensors[0].flatten(1), train.tensors[1], test.tensors[0].flatten(1), test.tensors[1]


def model():
    from torch import nn

    m = nn.Linear(64, 10)
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)
    return m


def flat(m) -> Any:
    import torch

    return torch.cat([p.detach().flatten() for p in m.parameters()])


def objective(m, x, y):
    """Mean cross-entropy plus the L2 term the optimizers apply as weight decay."""
    from torch import nn

    return nn.functional.cross_entropy(m(x), y) + WEIGHT_DECAY / 2 * flat_sq(m)


def flat_sq(m):
    return sum(p.pow(2).sum() for p in m.parameters())


def optimum(x, y):
    """The non-private optimum theta* of :func:`objective` (L-BFGS, full batch)."""
    import torch

    m = model()
    opt = torch.optim.LBFGS(
        m.parameters(), lr=1, max_iter=1000, history_size=50, tolerance_grad=1e-10, tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = objective(m, x, y)
        loss.backward()
        return loss

    opt.step(closure)  # one call converges here (gradient norm about 1e-5)
    return m


def evaluate(m, data, theta_star) -> dict[str, float]:
    import torch

    x, y, xt, yt = data
    with torch.no_grad():
        return {
            "test_accuracy": float((m(xt).argmax(1) == yt).double().mean()),
            "distance": float(torch.linalg.vector_norm(flat(m) - theta_star)),
            "train_loss": float(objective(m, x, y)),
        }


def train(method: str, c1: float, seed: int, *, epsilon: float, epochs: int, batch_size: int, lr: float, data):
    """One private run; returns the trained model and its privacy engine."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from dpkit.adaptive_clipping import AdaptiveClipping
    from dpkit.privacy_engine import PrivacyEngine

    x, y, _, _ = data
    torch.manual_seed(seed)
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    engine = PrivacyEngine(seed=seed)
    variant: dict[str, Any] = {"max_grad_norm": c1}
    if method == "adaptive":
        variant["max_grad_norm"] = AdaptiveClipping(initial_norm=c1)
    elif method == "dicesgd":
        variant["error_feedback_clip"] = c1
    m, opt, loader = engine.make_private(
        m, opt, DataLoader(TensorDataset(x, y), batch_size=batch_size), target_epsilon=epsilon,
        target_delta=DELTA, epochs=epochs, **variant,
    )  # fmt: skip
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(m(xb), yb).backward()
            opt.step()
    return m, engine


def cell_task(method: str, c1: float, seeds: list[int], threads: int, **settings: Any) -> dict[str, Any]:
    """All seeds of one (method, C1) in this process."""
    data = digits()
    theta_star = flat(optimum(data[0], data[1]))
    runs = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, engine = train(method, c1, seed, data=data, **settings)
        run = {"seed": seed, **evaluate(m, data, theta_star), "epsilon": engine.get_epsilon(DELTA)}
        run["noise_multiplier"] = engine.noise_multiplier
        opt = engine.optimizer
        if method == "adaptive":
            run["final_clip_norm"] = opt.max_grad_norm
        if method == "dicesgd":
            run["final_error_norm"] = opt.error_norm()
        runs.append(run)
    return {"method": method, "c1": c1, "runs": runs, **summarize(runs)}


def reference_task(threads: int) -> dict[str, Any]:
    data = digits()
    m = optimum(data[0], data[1])
    theta_star = flat(m)
    return {**evaluate(m, data, theta_star), "theta_norm": float(theta_star.norm())}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key in ("test_accuracy", "distance", "train_loss"):
        xs = [r[key] for r in runs]
        out[key] = {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}
    return out


def main(argv=None) -> None:
    if harness.child_main(argv, {"cell": cell_task, "reference": reference_task}):
        return
    ap = harness.parser(__doc__, "C1 in {0.1, 1}, one seed (a smoke test)")
    ap.add_argument("--c1", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0], help="clipping norms C1")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epsilon", type=float, default=2.0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2.0)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = ap.parse_args(argv)
    if args.quick:
        args.c1, args.seeds = [0.1, 1.0], 1
    settings = {"epsilon": args.epsilon, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    run = harness.Run("clipping_bias", args, __doc__)
    reference = harness.run_child(__file__, {"kind": "reference", "threads": args.threads}, threads=args.threads)
    harness.say(f"[clipping_bias] non-private optimum: test accuracy {reference['test_accuracy']:.3f}")
    cells = []
    for c1 in args.c1:
        for method in args.methods:
            task = {"kind": "cell", "method": method, "c1": c1, "seeds": list(range(args.seeds)),
                    "threads": args.threads, **settings}  # fmt: skip
            cell = harness.run_child(__file__, task, threads=args.threads)
            harness.say(
                f"    C1={c1:g} {method}: accuracy {cell['test_accuracy']['mean']:.3f} "
                f"+- {cell['test_accuracy']['std']:.3f}, distance {cell['distance']['mean']:.3f}"
            )
            cells.append(cell)
    run.finish(
        {"reference": reference, "cells": cells},
        settings={
            "c1": args.c1,
            "seeds": args.seeds,
            "delta": DELTA,
            "weight_decay": WEIGHT_DECAY,
            "methods": args.methods,
            **settings,
        },  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(main())
