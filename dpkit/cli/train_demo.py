"""The private-training demo: a small CNN on scikit-learn's digits, private (DP-SGD) vs non-private.

``run_train_demo()`` trains at epsilon = 3, delta = 1e-5 with a progress bar, prints the test accuracy next to
a non-private run and the epsilon spent, then sweeps ``epsilons`` and writes a privacy-utility plot. About a
minute on 2 CPU cores. ``nproc > 1`` trains every private run data-parallel on that many local processes (gloo,
:func:`dpkit.distributed.run_processes`; the model wrapped in ``DistributedDataParallel``): the same batches,
noise and epsilon as one process. ``train_demo_command`` is the ``dpkit train-demo`` click command. Notebook 01 reuses
``make_cnn``, ``train_once`` and ``accuracy``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import click
import torch
from torch import nn
from torch.utils.data import DataLoader

from dpkit.cli import options as opt
from dpkit.datasets import load_digits
from dpkit.privacy_engine import PrivacyEngine

DELTA = 1e-5
MAIN_EPSILON = 3.0


def make_cnn() -> nn.Module:
    """Two conv layers (GroupNorm, no BatchNorm) and two linear layers for 1x8x8 inputs; ~12k parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@torch.no_grad()
def accuracy(model: nn.Module, dataset) -> float:
    model.eval()
    x, y = dataset.tensors
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def train_once(
    epsilon: float,
    *,
    epochs: int,
    batch_size: int = 128,
    max_grad_norm: float = 1.0,
    accountant: str = "pld",
    seed: int = 0,
    progress: bool = False,
    data=None,
    nproc: int = 1,
) -> dict[str, Any]:
    """Train the CNN once (``epsilon=inf``: non-private baseline); returns accuracy, epsilon, sigma, time.

    ``nproc > 1``: a private run is trained on ``nproc`` processes (data-parallel DP-SGD), rank 0's result."""
    train, test = data if data is not None else load_digits(seed=seed)
    private = math.isfinite(epsilon)
    if private and nproc > 1:
        from dpkit.distributed import run_processes

        kwargs = dict(
            epochs=epochs,
            batch_size=batch_size,
            max_grad_norm=max_grad_norm,
            accountant=accountant,
            seed=seed,
            progress=progress,
            data=(train, test),
        )
        return run_processes(_train_rank, nproc, (epsilon, kwargs), timeout=24 * 3600.0)[0]
    torch.manual_seed(seed)
    model = make_cnn()
    parallel = torch.distributed.is_initialized()  # in a process of _train_rank
    if private:
        optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        loader = DataLoader(train, batch_size=batch_size)
        engine = PrivacyEngine(accountant, seed=seed)
        model, optimizer, loader = engine.make_private(
            module=nn.parallel.DistributedDataParallel(model) if parallel else model,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=epsilon,
            target_delta=DELTA,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
        )
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        label = f"epsilon={epsilon:g}" if private else "non-private"
        bar = tqdm(total=epochs * len(loader), desc=f"digits CNN, {label}", unit="step", leave=True)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            if bar is not None:
                bar.update(1)
                if len(y):
                    bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    if private:
        engine.detach()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return {
        "target_epsilon": epsilon,
        "epsilon_spent": engine.get_epsilon(DELTA) if private else math.inf,
        "noise_multiplier": engine.noise_multiplier if private else 0.0,
        "steps": engine.steps if private else epochs * len(loader),
        "test_accuracy": accuracy(model, test),
        "seconds": seconds,
    }


def _train_rank(rank: int, world_size: int, epsilon: float, kwargs: dict[str, Any]) -> dict[str, Any]:
    """One process of a data-parallel :func:`train_once` (rank 0 shows the progress bar)."""
    return train_once(epsilon, **{**kwargs, "progress": kwargs["progress"] and rank == 0})


def write_plot(results: list[dict[str, Any]], path) -> None:
    import matplotlib.ticker

    finite = sorted((r for r in results if math.isfinite(r["target_epsilon"])), key=lambda r: r["target_epsilon"])

    def draw(fig, ax) -> None:
        ax.plot(
            [r["target_epsilon"] for r in finite],
            [100 * r["test_accuracy"] for r in finite],
            "o-",
            label="DP-SGD (dpkit)",
        )
        for r in results:
            if not math.isfinite(r["target_epsilon"]):
                ax.axhline(100 * r["test_accuracy"], color="grey", ls="--", label="non-private (epsilon = inf)")
        ax.set_xscale("log")
        ticks = [r["target_epsilon"] for r in finite]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"epsilon (delta = {DELTA:g})")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Digits CNN: privacy vs utility")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")

    opt.save_figure(draw, path, figsize=(5.5, 3.8))


def run_train_demo(
    epsilons: Sequence[float] = (0.5, 1.0, 3.0, 8.0, math.inf),
    epochs: int = 15,
    plot_path: str | None = "privacy_utility.png",
    progress: bool = True,
    *,
    accountant: str = "pld",
    seed: int = 0,
    nproc: int = 1,
    echo=print,
) -> list[dict[str, Any]]:
    """Private run at epsilon=3 (progress bar) vs non-private, then the sweep over ``epsilons``, the plot.
    ``nproc``: processes of each private run (data-parallel DP-SGD)."""
    data = load_digits(seed=seed)
    where = f", private runs on {nproc} processes (data-parallel)" if nproc > 1 else ""
    echo(f"digits: {len(data[0])} training / {len(data[1])} test images (8x8), small CNN, {epochs} epochs{where}")
    private: dict[str, Any] = dict(accountant=accountant, seed=seed, data=data, nproc=nproc)
    main = train_once(MAIN_EPSILON, epochs=epochs, progress=progress, **private)
    base = train_once(math.inf, epochs=epochs, seed=seed, progress=progress, data=data)
    echo(
        f"test accuracy: private {100 * main['test_accuracy']:.1f}% (epsilon spent "
        f"{main['epsilon_spent']:.3f} "
        f"at delta={DELTA:g}, noise multiplier {main['noise_multiplier']:.3f}, {main['steps']} steps, "
        f"{main['seconds']:.1f} s) vs non-private {100 * base['test_accuracy']:.1f}% ({base['seconds']:.1f} "
        "s)"
    )
    results = []
    for eps in epsilons:
        if eps == MAIN_EPSILON:
            results.append(main)
        elif not math.isfinite(eps):
            results.append(base)
        else:
            results.append(train_once(eps, epochs=epochs, **private))
    echo(f"{'target epsilon':>14} {'epsilon spent':>13} {'sigma':>7} {'test acc':>8}")
    for r in results:
        echo(
            f"{r['target_epsilon']:>14g} {r['epsilon_spent']:>13.3f} {r['noise_multiplier']:>7.3f} "
            f"{100 * r['test_accuracy']:>7.1f}%"
        )
    if plot_path:
        write_plot(results, plot_path)
        echo(f"privacy-utility plot written to {plot_path}")
    return results


@opt.command("train-demo", "Train a small CNN on digits privately vs non-private; plot privacy vs utility.")
@opt.count_option("--epochs", minimum=1, maximum=10_000, default=15, help="Training epochs.")
@opt.plot_option("Where to write the privacy-utility plot.", default="privacy_utility.png")
@opt.choice_option("--accountant", choices=("pld", "rdp"), default="pld")
@opt.seed_option("Seed of data split, model and noise.")
@opt.count_option(
    "--nproc",
    minimum=1,
    maximum=64,
    default=1,
    help="Processes of each private run: data-parallel DP-SGD on this machine (gloo); same epsilon as 1.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def train_demo_command(epochs: int, plot_path: str, accountant: str, seed: int, nproc: int, no_progress: bool) -> None:
    """Train a small CNN on digits privately (epsilon=3) vs non-private, and plot privacy vs utility.

    With --nproc N every private run is data-parallel on N local processes: each draws its part of the global
    Poisson batch, the clipped sums are all-reduced and the noise is added once (the same epsilon as one process).
    """
    run_train_demo(
        nproc=nproc,
        epochs=epochs,
        plot_path=plot_path,
        progress=not no_progress,
        accountant=accountant,
        seed=seed,
        echo=click.echo,
    )
