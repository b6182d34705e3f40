"""Private training overhead: every contender against the non-private step of the same model, one pair per process.

Contenders: ``nonprivate`` (a second, independent non-private step: the A/A pair, i.e. how much two identical
steps differ here), ``noise_floor``, ``dpkit`` (default engine, book-keeping), ``dpkit_functorch`` (the generic
torch.func engine), ``opacus_hooks``, ``opacus_ghost``, ``opacus_ew``. A step is zero_grad, forward, loss, backward,
optimizer.step (clipping, noise and accounting included); sigma = 1, C = 1, SGD lr 0.01, fixed batches
(``poisson_sampling=False``: every contender sees identical shapes).

Time: for each (model, contender), a fresh process builds the non-private step and the contender's step from the
same seed, warms both up, and times them in ``--rounds`` interleaved rounds (order reversed every round); the
ratio is the contender's median step time over the non-private median of the same process. Memory: extra peak
RSS of ``--memory-steps`` steps (over the RSS just before the first one) in a fresh process of its own, the median
of ``--memory-repeats`` processes; the ratio is over the non-private figure measured the same way. The memory
processes run after all timing, two at a time (peak RSS does not depend on what else runs).

``noise_floor`` is not a DP step: the non-private step plus one Gaussian per parameter from dpkit's noise source
added to the gradients, without any clipping work: what any DP-SGD step costs here at the least.

Models are entries of ``MODELS`` (a label and a function returning ``(model, x, y)``); adding one is one entry.

    python benchmarks/training.py                          # all models, all contenders
    python benchmarks/training.py --models mlp --contenders dpkit,opacus_ghost --rounds 10 --no-memory
    python benchmarks/training.py --quick --out-dir /tmp/bench
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import harness

SIGMA, CLIP, LR = 1.0, 1.0, 0.01
CONTENDERS = ("nonprivate", "noise_floor", "dpkit", "dpkit_functorch", "opacus_hooks", "opacus_ghost", "opacus_ew")
LABELS = {
    "nonprivate": "non-private (A/A)",
    "noise_floor": "noise floor",
    "dpkit": "dpkit (book-keeping)",
    "dpkit_functorch": "dpkit generic (torch.func)",
    "opacus_hooks": "Opacus hooks",
    "opacus_ghost": "Opacus ghost",
    "opacus_ew": "Opacus ew",
}


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class Model:
    """One benchmark model: a label for the tables and ``build() -> (module, x, y)`` (one fixed batch)."""

    label: str
    build: Callable[[], tuple[Any, Any, Any]]


def _mlp():
    from torch import nn

    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


def _cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def _tiny_transformer(vocab=1000, seq=64, d=128, layers=2, heads=4, hidden=512, classes=10):
    """Two pre-LN encoder blocks from Embedding/Linear/LayerNorm and scaled_dot_product_attention, mean-pooled;
    position ids are an expanded (non-contiguous) view, as in many real models."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(att)
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class TinyTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
            self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, classes)

        def forward(self, ids):
            pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
            h = self.blocks(self.tok(ids) + self.pos(pos))
            return self.head(self.ln(h).mean(1))

    return TinyTransformer()


def _by_name(cls):
    """Class decorator for a model class defined in a builder (torch is imported in the children only): makes it
    a module-level name, as Opacus' ModuleValidator.fix clones models with torch.save, which pickles classes by
    name."""
    cls.__qualname__ = cls.__name__
    globals()[cls.__name__] = cls
    return cls


def _stock_transformer(vocab=1000, seq=64, d=128, layers=2, heads=4, hidden=512, classes=10):
    """Stock nn.TransformerEncoder (batch_first, post-LN, dropout 0.1) on token + position embeddings, mean-pooled.
    Opacus rows swap nn.MultiheadAttention for its DPMultiheadAttention (ModuleValidator.fix)."""
    import torch
    from torch import nn

    @_by_name
    class StockTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
            layer = nn.TransformerEncoderLayer(d, heads, hidden, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Linear(d, classes)

        def forward(self, ids):
            pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
            return self.head(self.encoder(self.tok(ids) + self.pos(pos)).mean(1))

    return StockTransformer()


def _lstm(vocab=1000, d=128, hidden=128, layers=2, classes=10):
    """Stock nn.LSTM (2 layers, batch_first) on token embeddings, classified from the last position's output.
    Opacus rows swap it for its DPLSTM (ModuleValidator.fix)."""
    from torch import nn

    @_by_name
    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.rnn = nn.LSTM(d, hidden, layers, batch_first=True)
            self.head = nn.Linear(hidden, classes)

        def forward(self, ids):
            return self.head(self.rnn(self.emb(ids))[0][:, -1])

    return LSTMClassifier()


def _tiny_bert(vocab=1000, seq=64, d=128, layers=2, heads=4, hidden=512, classes=10):
    """Hugging Face BertForSequenceClassification built from a config (no download): 2 layers, d=128, 4 heads,
    intermediate 512, dropout 0.1; token-type and broadcast position ids as the library makes them; the logits."""
    import transformers
    from torch import nn

    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden,
        max_position_embeddings=seq,
        num_labels=classes,
    )

    @_by_name
    class TinyBert(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = transformers.BertForSequenceClassification(config)

        def forward(self, ids):
            return self.bert(input_ids=ids).logits

    return TinyBert()


def _with_batch(make_module, make_x, classes=10):
    def build():
        import torch

        module = make_module()
        x = make_x(torch)
        return module, x, torch.randint(0, classes, (x.shape[0],))

    return build


MODELS: dict[str, Model] = {
    "mlp": Model("MLP 784-512-256-10, B=256", _with_batch(_mlp, lambda t: t.randn(256, 784))),
    "cnn": Model("CNN 2 conv + 2 fc, 28x28, B=256", _with_batch(_cnn, lambda t: t.randn(256, 1, 28, 28))),
    "tfm": Model(
        "transformer 2x d=128, seq 64, B=64", _with_batch(_tiny_transformer, lambda t: t.randint(0, 1000, (64, 64)))
    ),
    "tfm_stock": Model(
        "stock nn.TransformerEncoder 2x d=128, seq 64, B=64",
        _with_batch(_stock_transformer, lambda t: t.randint(0, 1000, (64, 64))),
    ),
    "lstm": Model(
        "stock nn.LSTM 2x hidden 128, seq 32, B=64", _with_batch(_lstm, lambda t: t.randint(0, 1000, (64, 32)))
    ),
    "bert": Model(
        "Hugging Face tiny BERT 2x d=128, seq 64, B=64",
        _with_batch(_tiny_bert, lambda t: t.randint(0, 1000, (64, 64))),
    ),
}


# ------------------------------------------------------------------------------------------------ contenders
def _loader(x, y):
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(x.repeat(50, *[1] * (x.dim() - 1)), y.repeat(50)), batch_size=x.shape[0])


def _noise_floor_step(model, opt, criterion, x, y):
    """Not a DP step: the non-private step plus drawing one Gaussian per parameter (dpkit's seeded noise, the call
    dpkit's step makes) and adding it to the gradients."""
    import torch

    from dpkit.noise import GaussianNoise

    params = [p for p in model.parameters() if p.requires_grad]
    noise = GaussianNoise(0)
    buf = torch.empty(sum(p.numel() for p in params))
    views = list(buf.split([p.numel() for p in params]))
    count = [0]

    def step():
        opt.zero_grad()
        criterion(model(x), y).backward()
        noise.fill_(buf, SIGMA * CLIP / x.shape[0], count[0])
        count[0] += 1
        for p, v in zip(params, views, strict=True):
            p.grad.add_(v.view_as(p))
        opt.step()

    return step


def make_step(model_name: str, contender: str) -> tuple[Callable[[], None], dict[str, Any]]:
    """A zero-argument callable doing one full training step of ``contender`` on ``model_name``, and notes."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model, x, y = MODELS[model_name].build()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    notes: dict[str, Any] = {}
    if contender == "nonprivate":
        pass
    elif contender == "noise_floor":
        return _noise_floor_step(model, opt, criterion, x, y), notes
    elif contender.startswith("dpkit"):
        import dpkit

        engine_name = "functorch" if contender == "dpkit_functorch" else "auto"
        engine = dpkit.PrivacyEngine(accountant="rdp", seed=0, grad_sample_engine=engine_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, opt, _ = engine.make_private(
                module=model, optimizer=opt, data_loader=_loader(x, y), noise_multiplier=SIGMA, max_grad_norm=CLIP,
                poisson_sampling=False,
            )  # fmt: skip
        notes["engine"] = getattr(getattr(engine, "engine", None), "name", engine_name)
    elif contender.startswith("opacus"):
        import opacus
        from opacus.validators import ModuleValidator

        if not ModuleValidator.is_valid(model):  # e.g. nn.MultiheadAttention -> DPMultiheadAttention
            model = ModuleValidator.fix(model)
            opt = torch.optim.SGD(model.parameters(), lr=LR)
            notes["opacus_fix"] = True
        mode = contender.split("_", 1)[1]
        engine = opacus.PrivacyEngine(accountant="rdp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = engine.make_private(
                module=model, optimizer=opt, criterion=criterion, data_loader=_loader(x, y),
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

    return step, notes


# ------------------------------------------------------------------------------------------------ children
def pair_task(model: str, contender: str, rounds: int, warmup: int, threads: int) -> dict[str, Any]:
    """In a fresh process: the non-private step and ``contender``'s, interleaved; samples in seconds."""
    harness.set_torch_threads(threads)
    base, _ = make_step(model, "nonprivate")
    try:
        other, notes = make_step(model, contender)
        for _ in range(warmup):
            other()
    except Exception as exc:  # an Opacus mode that does not run on this model is a result, not a crash
        return {"error": harness.error_text(exc)}
    for _ in range(warmup):
        base()
    steps = {"baseline": base, "contender": other}
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    for _, name in harness.interleaved(list(steps), rounds):
        with harness.Stopwatch() as t:
            steps[name]()
        wall[name].append(t.wall)
        cpu[name].append(t.cpu)
    return {"wall": wall, "cpu": cpu, "notes": notes}


def memory_task(model: str, contender: str, steps: int, threads: int) -> dict[str, Any]:
    harness.set_torch_threads(threads)
    step, _ = make_step(model, contender)
    with harness.PeakMemory() as m:
        for _ in range(steps):
            step()
    return {**m.to_dict(), "method": m.method}


# ------------------------------------------------------------------------------------------------ parent
def measure(models, contenders, *, rounds, warmup, memory_steps, memory_repeats, threads) -> list[dict[str, Any]]:
    rows = []
    for m in models:
        for c in contenders:
            row: dict[str, Any] = {"model": m, "label": MODELS[m].label, "contender": c}
            harness.say(f"[training] {m} / {c}: pair process ({rounds} interleaved rounds)")
            task = {"kind": "pair", "model": m, "contender": c, "rounds": rounds, "warmup": warmup, "threads": threads}
            try:
                res = harness.run_child(__file__, task, threads=threads)
            except harness.ChildFailed as exc:
                res = {"error": str(exc)}
            rows.append(row)
            if "error" in res:
                row["error"] = res["error"]
                harness.say(f"    error: {res['error']}")
                continue
            b, o = (harness.summary(res["wall"][k]) for k in ("baseline", "contender"))
            bc, oc = (harness.summary(res["cpu"][k]) for k in ("baseline", "contender"))
            row.update(
                notes=res["notes"],
                nonprivate_s=b,
                contender_s=o,
                nonprivate_cpu_s=bc,
                contender_cpu_s=oc,
                x_time=harness.ratio(o["median"], b["median"]),
                x_time_min=harness.ratio(o["min"], b["min"]),
                x_cpu=harness.ratio(oc["median"], bc["median"]),
            )
            harness.say(
                f"    non-private {b['median'] * 1e3:.1f} ms, {c} {o['median'] * 1e3:.1f} ms: x{row['x_time']:.2f}"
            )
    if memory_repeats > 0:
        todo = [r for r in rows if "error" not in r]
        harness.say(f"[training] memory: {len(todo) * memory_repeats} fresh processes, {threads} at a time")
        tasks = [
            {
                "kind": "memory",
                "model": r["model"],
                "contender": r["contender"],
                "steps": memory_steps,
                "threads": threads,
            }
            for r in todo
            for _ in range(memory_repeats)
        ]
        results = harness.run_children(__file__, tasks, threads=threads)
        for i, r in enumerate(todo):
            mine = results[i * memory_repeats : (i + 1) * memory_repeats]
            failed = [str(x) for x in mine if isinstance(x, harness.ChildFailed)]
            if failed:
                r["memory_error"] = failed[0]
            r["extra_peak_mb"] = harness.summary(x["extra_peak_mb"] for x in mine if isinstance(x, dict))
        base = {r["model"]: r["extra_peak_mb"]["median"] for r in todo if r["contender"] == "nonprivate"}
        for r in todo:
            r["x_mem"] = harness.ratio(r["extra_peak_mb"]["median"], base.get(r["model"]))
    return rows


def main(argv=None) -> None:
    tasks = {"pair": pair_task, "memory": memory_task}
    if harness.child_main(argv, tasks):
        return
    p = harness.parser(__doc__, "MLP only, 3 rounds, 1 warm-up step, 1 memory process of 2 steps (a smoke test)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {','.join(MODELS)}")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per memory figure (median)")
    p.add_argument("--memory-steps", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.models = "mlp" if args.models == ",".join(MODELS) else args.models
        args.rounds, args.warmup, args.memory_repeats, args.memory_steps = 3, 1, 1, 2
    models = [m for m in args.models.split(",") if m]
    contenders = [c for c in args.contenders.split(",") if c]
    if "nonprivate" not in contenders:  # its memory is the memory ratios' baseline; its A/A pair is cheap
        contenders.insert(0, "nonprivate")
    for name, value, allowed in (("models", models, MODELS), ("contenders", contenders, CONTENDERS)):
        bad = [v for v in value if v not in allowed]
        if bad:
            p.error(f"--{name}: {bad} not in {list(allowed)}")
    run = harness.Run("training", args, __doc__, anchors=("opacus",))
    rows = measure(
        models,
        contenders,
        rounds=args.rounds,
        warmup=args.warmup,
        memory_steps=args.memory_steps,
        memory_repeats=0 if args.no_memory else args.memory_repeats,
        threads=args.threads,
    )
    run.finish(
        {"models": {m: MODELS[m].label for m in models}, "labels": LABELS, "rows": rows},
        settings={
            "models": models,
            "contenders": contenders,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "memory_repeats": 0 if args.no_memory else args.memory_repeats,
            "memory_steps": args.memory_steps,
            "sigma": SIGMA,
            "max_grad_norm": CLIP,
            "lr": LR,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
