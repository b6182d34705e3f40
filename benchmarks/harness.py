"""What every benchmark here shares: thread settings, fresh processes, interleaved timing, peak memory, the machine's
description and the JSON result files.

Method, the same in every script:

* Every measurement runs in a child process started fresh with ``OMP_WAIT_POLICY=PASSIVE`` (PyTorch's default
  OpenMP spin-waiting inflates step times many-fold on a shared machine) and ``--threads`` threads (2 by default:
  ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``DPKIT_THREADS``, ``torch.set_num_threads``).
* A ratio (dpkit against an anchor, a private step against the non-private one) is measured in a process that holds
  the two contenders of that ratio and nothing else, timed in interleaved rounds (the order is reversed every
  round), so slow drift of the machine hits both alike and no third contender perturbs the baseline.
* Peak memory is the kernel's peak-RSS mark (VmHWM, reset just before the measured work through
  ``/proc/self/clear_refs``) minus the RSS at that moment: the extra memory the work needed, imports and inputs
  excluded; ``ru_maxrss`` is the fallback where the mark cannot be reset.
* Results go to ``benchmarks/results/<name>.json`` with the machine, the load average before and after, versions,
  dpkit's git commit and whether the tree was dirty, the thread settings and the exact command.

A script calls :func:`child_main` first thing in ``main``, then takes its options from :func:`parser`; its parent
starts children with :func:`run_child` (or :func:`try_child`) and writes the results with :class:`Run`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
THREADS = 2
CHILD_FLAG = "--child-task"
_RESULT_TAG = "@@benchmark-result "


# ---------------------------------------------------------------------------------------------- threads
def thread_env(threads: int = THREADS) -> dict[str, str]:
    """The environment of every measuring process (set before numpy or torch is imported there)."""
    n = str(int(threads))
    return {
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "DPKIT_THREADS": n,
    }


# A script that imports this module before numpy and torch gets the settings in its own process too.
for _k, _v in thread_env().items():
    os.environ.setdefault(_k, _v)


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- fresh processes
class ChildFailed(RuntimeError):
    """A child process exited with an error; the message is the last line of its stderr."""


def run_child(
    script: str | Path,
    task: Mapping[str, Any],
    *,
    threads: int = THREADS,
    extra_env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``task`` in a fresh ``python script --child-task JSON`` and return the dict it reported."""
    cmd = [sys.executable, str(script), CHILD_FLAG, json.dumps(dict(task))]
    env = {**os.environ, **thread_env(threads), **(extra_env or {})}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"timed out after {timeout} s") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise ChildFailed(lines[-1] if lines else f"exit status {done.returncode}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG) :])
    raise ChildFailed("the child reported no result")


def run_children(
    script: str | Path, tasks: Sequence[Mapping[str, Any]], *, threads: int = THREADS, parallel: int = THREADS
) -> list[dict[str, Any] | ChildFailed]:
    """:func:`run_child` for every task, ``parallel`` at a time, results in order (a failure as its ChildFailed).

    Only for memory measurements: a process's peak RSS does not depend on what else runs, its timings would.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(task: Mapping[str, Any]) -> dict[str, Any] | ChildFailed:
        try:
            return run_child(script, task, threads=threads)
        except ChildFailed as exc:
            return exc

    with ThreadPoolExecutor(max(1, parallel)) as ex:
        return list(ex.map(one, tasks))


def child_main(argv: Sequence[str] | None, tasks: Mapping[str, Callable[..., Any]]) -> bool:
    """In a child started by :func:`run_child`: run the task named by its ``kind`` and report it; True if so.

    ``tasks[kind](**task)`` gets the task's other keys as keyword arguments (``threads`` included).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if CHILD_FLAG not in argv:
        return False
    task = json.loads(argv[argv.index(CHILD_FLAG) + 1])
    set_torch_threads_if_loaded(task.get("threads", THREADS))
    result = tasks[task.pop("kind")](**task)
    print(_RESULT_TAG + json.dumps(clean(result)), flush=True)
    return True


def try_child(
    script: str | Path, task: Mapping[str, Any], *, threads: int = THREADS, label: str = "    "
) -> dict[str, Any] | None:
    """:func:`run_child`, or None after saying ``<label>failed: <why>`` (the caller skips that cell)."""
    try:
        return run_child(script, task, threads=threads)
    except ChildFailed as exc:
        say(f"{label}failed: {exc}")
        return None


def set_torch_threads_if_loaded(threads: int) -> None:
    if "torch" in sys.modules:
        set_torch_threads(threads)


def error_text(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:100]}" if msg else type(exc).__name__


# ---------------------------------------------------------------------------------------------- timing
class Stopwatch:
    """``with Stopwatch() as t: ...``; then ``t.wall`` and ``t.cpu`` (process CPU time) in seconds."""

    wall: float
    cpu: float

    def __enter__(self) -> Stopwatch:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def interleaved(names: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """``(round, name)``: every name once per round, the order reversed every other round (A B, B A, A B, ...)."""
    order = list(names)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            yield r, name


def summary(samples: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and the samples (seconds or any unit) of one contender's measurements."""
    xs = [float(x) for x in samples]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "samples": xs}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0 or (isinstance(a, float) and math.isnan(a)):
        return None
    return a / b


def median_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


# ---------------------------------------------------------------------------------------------- memory
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_mb() -> float:
    """Resident memory of this process now, MB."""
    try:
        return _status_mb("VmRSS")
    except (OSError, RuntimeError):
        return float("nan")


def maxrss_mb() -> float:
    """Peak resident memory of this process since it started (``ru_maxrss``), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """``with PeakMemory() as m: work()``; then ``m.extra_mb``: peak RSS during the block minus the RSS before it.

    The kernel's peak mark is reset on entry, so what ran earlier in the process does not count; without that
    (not Linux) the process's lifetime peak is used and ``m.method`` says so.
    """

    extra_mb: float
    peak_mb: float
    base_mb: float
    method: str

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM reset before the work, minus VmRSS then"
        except OSError:
            self.method = "ru_maxrss (lifetime peak) minus VmRSS before the work"
        self.base_mb = rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method.startswith("VmHWM"):
            self.peak_mb = _status_mb("VmHWM")
        else:
            self.peak_mb = maxrss_mb()
        self.extra_mb = self.peak_mb - self.base_mb

    def to_dict(self) -> dict[str, float]:
        return {"extra_peak_mb": self.extra_mb, "peak_rss_mb": self.peak_mb, "base_rss_mb": self.base_mb}


# ---------------------------------------------------------------------------------------------- metadata
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """dpkit's commit and whether tracked files differ from it (result files under benchmarks/results excluded)."""
    commit = (_git("rev-parse", "HEAD") or "").strip() or None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"commit": commit, "dirty": bool(changed) if status is not None else None, "changed_files": changed[:50]}


def versions(distributions: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in distributions:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": _mem_total_gb(),
        "platform": platform.platform(),
    }


BASE_PACKAGES = ("dpkit", "numpy", "scipy", "pandas", "torch")


class Run:
    """One benchmark run: metadata taken at the start and at the end, and the JSON file written at the end.

    ``Run(name, args, __doc__, anchors=("opacus",))`` with the options of :func:`parser` in ``args`` and the
    script's docstring (its method, stored with the results); ``run.write(results, settings=...)`` -> the file's
    path (``settings`` gets ``quick`` first).
    """

    def __init__(self, name: str, args: argparse.Namespace, doc: str | None, anchors: Iterable[str] = ()) -> None:
        self.name = name
        self.out_dir = Path(args.out_dir) if args.out_dir else RESULTS
        self.threads = args.threads
        self.quick = args.quick
        self.method = method_text(doc)
        self.anchors = tuple(anchors)
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self.load_before = os.getloadavg()
        self.git_before = git_state()  # the code the run starts with (children load it as they start)
        self.t0 = time.perf_counter()

    def meta(self) -> dict[str, Any]:
        return {
            "date": self.started.isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - self.t0, 1),
            "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
            "cwd": os.getcwd(),
            "machine": machine(),
            "load_average_before": list(self.load_before),
            "load_average_after": list(os.getloadavg()),
            "threads": {**thread_env(self.threads), "torch_num_threads": self.threads},
            "versions": versions((*BASE_PACKAGES, *self.anchors)),
            "anchors": list(self.anchors),
            "git": {**self.git_before, "changed_during_run": git_state() != self.git_before},
        }

    def write(self, results: Mapping[str, Any], *, settings: Mapping[str, Any]) -> Path:
        doc = {
            "benchmark": self.name,
            "schema": 1,
            "meta": self.meta(),
            "settings": {"quick": self.quick, **settings},
            "method": self.method,
            **results,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.name}.json"
        path.write_text(json.dumps(clean(doc), indent=1) + "\n")
        return path

    def finish(self, results: Mapping[str, Any], *, settings: Mapping[str, Any]) -> Path:
        """Write the results file, print its tables, say where it is."""
        import tables

        path = self.write(results, settings=settings)
        print(tables.render_file(path))
        shown = os.path.relpath(path)
        say(f"wrote {path if shown.startswith('..') else shown}")
        return path


def clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars plain numbers, tuples lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A script's parser: the first paragraph of its docstring as description, and the options every benchmark
    script has: ``--quick`` (``quick_help`` says what it runs), ``--threads``, ``--out-dir``."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--threads", type=int, default=THREADS, help="threads of every measuring process (2)")
    ap.add_argument("--out-dir", default=None, help=f"where <name>.json goes (default {RESULTS.relative_to(ROOT)})")
    return ap


def add_oracle_grid(ap: argparse.ArgumentParser, protocols: Sequence[str]) -> None:
    """``--k``, ``--epsilon``, ``--protocols``: the grid of the frequency-oracle benchmarks (domain sizes, one
    epsilon, the protocols among ``protocols``)."""
    ap.add_argument("--k", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--protocols", nargs="+", default=list(protocols), choices=list(protocols))


def say(*parts: object) -> None:
    print(*parts, flush=True)


def method_text(doc: str | None) -> str:
    """A script's docstring without its usage lines (indented commands): the method, stored with the results."""
    keep = [line for line in (doc or "").splitlines() if not line.startswith("    ")]
    return "\n".join(keep).strip()
