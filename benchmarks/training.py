"""Private training overhead: non-private vs dpkit (book-keeping, generic torch.func) vs Opacus modes.

Models of ../shared/specs/training.md section 4: MLP 784-512-256-10 (batch 256); CNN conv(1->32,3x3)-pool-
conv(32->64,3x3)-pool-fc(3136->128)-fc(128->10) on 28x28 (batch 256); transformer: 2 pre-LN encoder blocks
built from Embedding/Linear/LayerNorm + scaled_dot_product_attention, d=128, 4 heads, MLP 512, seq 64, vocab
1000, position ids as an expanded (non-contiguous) view, mean-pool + linear head (batch 64).

Method (training.md 4.1): CPU, ``torch.set_num_threads(2)``, ``OMP_WAIT_POLICY=PASSIVE`` set before torch is
imported; every contender of a model lives in one process and is timed in interleaved rounds (order reversed
every round) so background load hits all of them alike; a step = zero_grad, forward, loss, backward,
optimizer.step (clipping, noise, accounting included); sigma = 1, C = 1, SGD lr 0.01, fixed batches
(``poisson_sampling=False``, identical shapes for every contender). Extra peak memory: each (model, contender)
runs alone in a fresh subprocess for 5 steps; peak RSS (VmHWM, reset just before the first step) minus the RSS
at that point; the median of 3 such processes.

``noise_floor`` is not a DP step: the non-private step plus drawing one Gaussian per parameter with dpkit's noise
source and adding it to the gradients, i.e. what any DP-SGD step costs at the least on this machine without any
clipping work. Its ratio bounds what a private engine can reach.

    .venv/bin/python benchmarks/training.py                 # all models, all contenders
    .venv/bin/python benchmarks/training.py --models mlp --rounds 10 --no-memory
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see training.md 4.1)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

MODELS = ("mlp", "cnn", "tfm")
CONTENDERS = ("nonprivate", "noise_floor", "dpkit", "dpkit_functorch", "opacus_hooks", "opacus_ghost", "opacus_ew")
SIGMA, CLIP, LR = 1.0, 1.0, 0.01


# ------------------------------------------------------------------------------------------------ models
class Block(nn.Module):
    def __init__(self, d=128, heads=4, hidden=512):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(att)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    def __init__(self, vocab=1000, seq=64, d=128, layers=2, classes=10):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.Sequential(*[Block(d) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
        h = self.blocks(self.tok(ids) + self.pos(pos))
        return self.head(self.ln(h).mean(1))


def build(name: str, seed: int = 0):
    """``(model, x, y, dataset size)`` for one benchmark model."""
    torch.manual_seed(seed)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
        x = torch.randn(256, 784)
    elif name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip
        x = torch.randn(256, 1, 28, 28)
    elif name == "tfm":
        model = TinyTransformer()
        x = torch.randint(0, 1000, (64, 64))
    else:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    y = torch.randint(0, 10, (x.shape[0],))
    return model, x, y


def loader(x, y) -> DataLoader:
    return DataLoader(TensorDataset(x.repeat(50, *[1] * (x.dim() - 1)), y.repeat(50)), batch_size=x.shape[0])


# ------------------------------------------------------------------------------------------------ contenders
def _noise_floor_step(model, opt, criterion, x, y):
    """Not a DP step: the non-private step plus what every DP-SGD step must add at the least, drawing one
    Gaussian per parameter (dpkit's seeded noise, the same call as dpkit's step) and adding it to the gradients.
    It shows the floor the noise alone sets for a model (no clipping at all)."""
    from dpkit.noise import GaussianNoise

    params = [p for p in model.parameters() if p.requires_grad]
    noise = GaussianNoise(0)
    buf = torch.empty(sum(p.numel() for p in params))
    views = list(buf.split([p.numel() for p in params]))
    steps = [0]

    def step():
        opt.zero_grad()
        criterion(model(x), y).backward()
        noise.fill_(buf, SIGMA * CLIP / x.shape[0], steps[0])
        steps[0] += 1
        for p, v in zip(params, views, strict=True):
            p.grad.add_(v.view_as(p))
        opt.step()

    return step


def make_step(model_name: str, contender: str):
    """A zero-argument callable doing one full training step of ``contender`` on ``model_name``."""
    model, x, y = build(model_name)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    if contender == "nonprivate":
        pass
    elif contender == "noise_floor":
        return _noise_floor_step(model, opt, criterion, x, y)
    elif contender.startswith("dpkit"):
        import dpkit

        engine_name = "functorch" if contender == "dpkit_functorch" else "auto"
        engine = dpkit.PrivacyEngine(accountant="rdp", seed=0, grad_sample_engine=engine_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, opt, _ = engine.make_private(
                model, opt, loader(x, y), noise_multiplier=SIGMA, max_grad_norm=CLIP, poisson_sampling=False
            )
        if contender == "dpkit":
            assert engine.engine.name == "bookkeeping", engine.engine.name
    elif contender.startswith("opacus"):
        import opacus

        mode = contender.split("_", 1)[1]
        engine = opacus.PrivacyEngine(accountant="rdp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = engine.make_private(
                module=model, optimizer=opt, criterion=criterion, data_loader=loader(x, y),
                noise_multiplier=SIGMA, max_grad_norm=CLIP, poisson_sampling=False, grad_sample_mode=mode,
            )  # fmt: skip
        if mode == "ghost":
            model, opt, criterion, _ = out
        else:
            model, opt, _ = out
    else:
        raise ValueError(f"contender must be one of {CONTENDERS}, got {contender!r}")

    def step():
        opt.zero_grad()
        criterion(model(x), y).backward()
        opt.step()

    return step


# ------------------------------------------------------------------------------------------------ measurement
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(model_name: str, contender: str, steps: int) -> None:
    """Extra peak RSS of ``steps`` training steps over the RSS just before the first one.

    The kernel's peak-RSS mark (VmHWM) is reset just before the first step (``/proc/self/clear_refs``), so
    transient allocations made while building the model and data do not count; ru_maxrss is the fallback.
    """
    torch.set_num_threads(2)
    step = make_step(model_name, contender)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    base = _status_mb("VmRSS")
    for _ in range(steps):
        step()
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"delta_peak_mb": peak - base, "reset": reset}))


def measure_memory(model_name: str, contender: str, steps: int = 5, repeats: int = 3) -> float:
    """Median over ``repeats`` fresh processes (one process's peak RSS varies by tens of MB on the CNN)."""
    cmd = [sys.executable, __file__, "--memory-child", model_name, contender, str(steps)]
    peaks = []
    for _ in range(repeats):
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
        peaks.append(json.loads(done.stdout.strip().splitlines()[-1])["delta_peak_mb"])
    return statistics.median(peaks)


def time_model(model_name: str, contenders: list[str], rounds: int, warmup: int) -> dict[str, dict]:
    steps, failed = {}, {}
    for c in contenders:
        try:
            steps[c] = make_step(model_name, c)
            for _ in range(warmup):
                steps[c]()
        except Exception as e:  # an Opacus mode that does not run on this model is reported, not fatal
            failed[c] = f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
            steps.pop(c, None)
    wall = {c: [] for c in steps}
    cpu = {c: [] for c in steps}
    order = list(steps)
    for r in range(rounds):
        for c in order if r % 2 == 0 else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            steps[c]()
            wall[c].append(time.perf_counter() - t0)
            cpu[c].append(time.process_time() - c0)
    out = {c: {"median_ms": statistics.median(wall[c]) * 1e3, "min_ms": min(wall[c]) * 1e3,
               "cpu_ms": statistics.median(cpu[c]) * 1e3} for c in steps}  # fmt: skip
    for c, why in failed.items():
        out[c] = {"error": why}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the per-contender memory subprocesses")
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per memory figure (median)")
    p.add_argument("--memory-child", nargs=3, metavar=("MODEL", "CONTENDER", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1], int(args.memory_child[2]))
        return

    import pandas as pd

    torch.set_num_threads(2)
    models = [m for m in args.models.split(",") if m]
    contenders = [c for c in args.contenders.split(",") if c]
    if "nonprivate" not in contenders:
        contenders.insert(0, "nonprivate")
    load_before = os.getloadavg()
    rows = []
    for m in models:
        timing = time_model(m, contenders, args.rounds, args.warmup)
        mem = {}
        if not args.no_memory:
            for c in contenders:
                if "error" in timing.get(c, {}):
                    continue
                try:
                    mem[c] = measure_memory(m, c, repeats=args.memory_repeats)
                except RuntimeError as e:
                    mem[c] = float("nan")
                    print(f"memory run failed for {m}/{c}: {e}", file=sys.stderr)
        base_t = timing["nonprivate"]
        for c in contenders:
            t = timing[c]
            if "error" in t:
                rows.append({"model": m, "contender": c, "error": t["error"]})
                continue
            row = {
                "model": m,
                "contender": c,
                "median_ms": t["median_ms"],
                "min_ms": t["min_ms"],
                "x_time": t["median_ms"] / base_t["median_ms"],
                "x_time_min": t["min_ms"] / base_t["min_ms"],
                "x_cpu": t["cpu_ms"] / base_t["cpu_ms"],
            }
            if mem:
                row["dpeak_mb"] = mem.get(c, float("nan"))
                row["x_mem"] = row["dpeak_mb"] / mem["nonprivate"] if mem.get("nonprivate") else float("nan")
            rows.append(row)
    load_after = os.getloadavg()
    import opacus

    table = pd.DataFrame(rows)
    print(f"# command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(
        f"# torch {torch.__version__}, opacus {opacus.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, rounds {args.rounds} (interleaved), warmup {args.warmup}"
    )
    print(
        "# load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}; cores {}".format(
            *load_before, *load_after, os.cpu_count()
        )
    )
    print("# x_time = median step time / non-private's; x_time_min = min / min; x_mem = extra peak RSS / non-private's")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.2f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
