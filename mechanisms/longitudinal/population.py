"""The clients of a longitudinal collection: per-user parameters and memoized permanent responses."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dpkit.accountants import DpEvent
from dpkit.mechanisms._validation import check_count, check_rng, check_values
from dpkit.mechanisms.longitudinal.base import LongitudinalProtocol, UserParams
from dpkit.mechanisms.longitudinal.registry import LONGITUDINAL_PROTOCOLS

__all__ = ["ClientPopulation"]


class ClientPopulation:
    """The clients of a longitudinal collection: per-user parameters and memoized PRRs, vectorized.

    ``report(values, rng, users=None)`` runs one collection round for all users (or the given user indices) and
    returns their reports; memoized responses are reused whenever a user's memo key repeats. The memo is a sorted
    table keyed by ``user * n_keys + key``, so a round costs O(n log n) whatever the history length.
    ``save(path)`` / ``ClientPopulation.load(path)`` persist everything to and from the same path (npz, no
    pickle); ``load`` checks every entry first and refuses a file that is not a well-formed population.
    """

    protocol: LongitudinalProtocol
    n_users: int
    user_params: UserParams
    memo_keys: np.ndarray
    memo_payload: np.ndarray | None
    n_reports: np.ndarray

    def __init__(self, protocol: LongitudinalProtocol, n_users: int, rng: np.random.Generator):
        if not isinstance(protocol, LongitudinalProtocol):
            raise TypeError(f"protocol must be a LongitudinalProtocol, got {type(protocol).__name__}")
        self.protocol = protocol
        self.n_users = check_count("n_users", n_users, minimum=1)
        self.user_params = protocol.init_users(self.n_users, check_rng(rng))
        self.memo_keys = np.empty(0, dtype=np.uint64)
        self.memo_payload = None
        self.n_reports = np.zeros(self.n_users, dtype=np.int64)

    # ------------------------------------------------------------------------------ rounds
    def report(self, values: ArrayLike, rng: np.random.Generator, users: ArrayLike | None = None) -> np.ndarray:
        proto = self.protocol
        check_rng(rng)
        if users is None:
            idx_users = np.arange(self.n_users)
        else:
            idx_users = check_values("users", users, self.n_users)
            if len(np.unique(idx_users)) != len(idx_users):
                raise ValueError("users must be distinct within one round")
        vals = check_values("values", values, proto.k)
        if len(vals) != len(idx_users):
            raise ValueError(f"values must have one entry per reporting user ({len(idx_users)}), got {len(vals)}")
        params = {name: arr[idx_users] for name, arr in self.user_params.items()}
        keys = proto.memo_key(vals, params).astype(np.uint64)
        combined = idx_users.astype(np.uint64) * np.uint64(proto.n_keys) + keys
        idx = np.searchsorted(self.memo_keys, combined)
        found = idx < len(self.memo_keys)
        found[found] = self.memo_keys[idx[found]] == combined[found]
        missing = ~found
        fresh = None
        if missing.any():
            sub = {name: arr[missing] for name, arr in params.items()}
            fresh = proto.first_round(keys[missing].astype(np.int64), sub, rng)
        # assemble this round's PRR payloads (every key is memoized when nothing is missing)
        known = fresh if fresh is not None else self.memo_payload
        assert known is not None
        payload = np.empty((len(idx_users), known.shape[1]), dtype=known.dtype)
        if found.any():
            assert self.memo_payload is not None
            payload[found] = self.memo_payload[idx[found]]
        if fresh is not None:
            payload[missing] = fresh
            new_keys = np.concatenate([self.memo_keys, combined[missing]])
            new_payload = fresh if self.memo_payload is None else np.concatenate([self.memo_payload, fresh])
            order = np.argsort(new_keys, kind="stable")
            self.memo_keys, self.memo_payload = new_keys[order], new_payload[order]
        self.n_reports[idx_users] += 1
        return proto.second_round(payload, params, rng)

    # ------------------------------------------------------------------------------ privacy
    def distinct_memoized(self) -> np.ndarray:
        """Per user: the number of distinct memo keys used so far."""
        owners = (self.memo_keys // np.uint64(self.protocol.n_keys)).astype(np.int64)
        return np.bincount(owners, minlength=self.n_users)

    def privacy_spent(self) -> np.ndarray:
        """Per user: min(tau * eps_1, distinct * eps_perm) after their tau reports."""
        return self.protocol.privacy_spent(self.n_reports, self.distinct_memoized())

    def privacy_event(self, user: int) -> DpEvent:
        user = check_count("user", user, maximum=self.n_users - 1)
        return self.protocol.longitudinal_event(int(self.n_reports[user]), int(self.distinct_memoized()[user]))

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write everything to ``path`` exactly (an npz archive, no pickle; no suffix is added), which
        :meth:`load` reads back."""
        params = dataclasses.asdict(self.protocol)  # type: ignore[call-overload]  # protocols are dataclasses
        meta = {"format": FORMAT, "class": type(self.protocol).__name__, "params": params}
        arrays: dict[str, Any] = {f"user_{k}": v for k, v in self.user_params.items()}
        if self.memo_payload is not None:
            arrays["memo_payload"] = self.memo_payload
        with open(path, "wb") as f:  # a file object: np.savez would append '.npz' to a name without it
            np.savez(f, meta=np.array(json.dumps(meta)), memo_keys=self.memo_keys, n_reports=self.n_reports, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClientPopulation:
        """The population :meth:`save` wrote to ``path``. Everything is checked before anything is built (the
        protocol and its parameters, the per-user arrays, the memo table and its payloads, the report counts);
        a file that is not such a population, or was tampered with, gives one ValueError naming the entry."""
        where = str(os.fspath(path))
        try:
            with np.load(path, allow_pickle=False) as z:
                entries = {name: z[name] for name in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise ValueError(f"{where}: not a ClientPopulation file ({type(err).__name__}: {err})") from None
        protocol = _load_protocol(where, entries)
        n_reports = _entry(where, entries, "n_reports")
        if n_reports.dtype.kind not in "iu" or n_reports.ndim != 1 or len(n_reports) < 1:
            raise ValueError(f"{where}: n_reports must be a 1-D integer array, one count per user (at least one)")
        if n_reports.min() < 0:
            raise ValueError(
                f"{where}: n_reports must be >= 0, got {int(n_reports.min())} for user {int(np.argmin(n_reports))}"
            )
        n_users = len(n_reports)
        users = {name[5:]: arr for name, arr in entries.items() if name.startswith("user_")}
        try:
            users = protocol.check_user_params("user_", users, n_users)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
        memo_keys = _entry(where, entries, "memo_keys")
        if memo_keys.dtype != np.uint64 or memo_keys.ndim != 1:
            raise ValueError(f"{where}: memo_keys must be a 1-D uint64 array, got {memo_keys.dtype} {memo_keys.shape}")
        if len(memo_keys) > 1 and not (memo_keys[1:] > memo_keys[:-1]).all():
            raise ValueError(f"{where}: memo_keys must be sorted and distinct (the memo table)")
        if len(memo_keys) and int(memo_keys[-1]) >= n_users * protocol.n_keys:
            raise ValueError(f"{where}: memo_keys must be user * {protocol.n_keys} + key for users < {n_users}")
        payload = entries.get("memo_payload")
        if (payload is None) != (len(memo_keys) == 0):
            raise ValueError(f"{where}: memo_payload must be present exactly when memo_keys is not empty")
        if payload is not None:
            try:
                payload = protocol.check_payload("memo_payload", payload)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: {err}") from None
            if len(payload) != len(memo_keys):
                raise ValueError(
                    f"{where}: memo_payload must have one row per memo key ({len(memo_keys)}), got {len(payload)}"
                )
        owners = (memo_keys // np.uint64(protocol.n_keys)).astype(np.int64)
        distinct = np.bincount(owners, minlength=n_users)
        over = np.flatnonzero(distinct > n_reports)
        if over.size:
            u = int(over[0])
            raise ValueError(
                f"{where}: n_reports[{u}] = {int(n_reports[u])} is below the user's {int(distinct[u])} memoized keys "
                "(each key comes from a report): the report counts were truncated"
            )
        unknown = sorted(
            set(entries) - {"meta", "n_reports", "memo_keys", "memo_payload"} - {f"user_{u}" for u in users}
        )
        if unknown:
            raise ValueError(f"{where}: unknown entries {unknown}")
        pop = cls.__new__(cls)
        pop.protocol, pop.n_users, pop.user_params = protocol, n_users, users
        pop.memo_keys, pop.memo_payload, pop.n_reports = memo_keys, payload, n_reports.astype(np.int64)
        return pop


FORMAT = "dpkit.ClientPopulation/1"


def _entry(where: str, entries: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in entries:
        raise ValueError(f"{where}: no {name!r} entry (not a file written by ClientPopulation.save)")
    return entries[name]


def _load_protocol(where: str, entries: dict[str, np.ndarray]) -> LongitudinalProtocol:
    """The protocol named by the file's metadata, built (so its parameters are checked) from them."""
    raw = _entry(where, entries, "meta")
    try:
        meta = json.loads(str(raw)) if raw.dtype.kind == "U" and raw.ndim == 0 else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict) or "class" not in meta:
        raise ValueError(f"{where}: meta must be the JSON object {{'class': ..., 'params': {{...}}}} that save writes")
    if meta.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{where}: meta.format must be {FORMAT!r}, got {meta.get('format')!r}")
    classes = {c.__name__: c for c in LONGITUDINAL_PROTOCOLS.values()}
    if meta["class"] not in classes:
        raise ValueError(f"{where}: meta.class must be one of {', '.join(classes)}, got {meta['class']!r}")
    try:
        return classes[meta["class"]](**meta["params"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: meta.params: {err}") from None
