"""The clients of a longitudinal collection: per-user parameters and memoized permanent responses."""

from __future__ import annotations

import dataclasses
import json
import os
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
    ``save(path)`` / ``ClientPopulation.load(path)`` persist everything (npz, no pickle).
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
        user = int(check_values("user", np.array([user]), self.n_users)[0])
        return self.protocol.longitudinal_event(int(self.n_reports[user]), int(self.distinct_memoized()[user]))

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        params = dataclasses.asdict(self.protocol)  # type: ignore[call-overload]  # protocols are dataclasses
        meta = {"class": type(self.protocol).__name__, "params": params}
        arrays: dict[str, Any] = {f"user_{k}": v for k, v in self.user_params.items()}
        if self.memo_payload is not None:
            arrays["memo_payload"] = self.memo_payload
        np.savez(path, meta=np.array(json.dumps(meta)), memo_keys=self.memo_keys, n_reports=self.n_reports, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClientPopulation:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            classes = {c.__name__: c for c in LONGITUDINAL_PROTOCOLS.values()}
            protocol = classes[meta["class"]](**meta["params"])
            pop = cls.__new__(cls)
            pop.protocol = protocol
            pop.n_reports = z["n_reports"]
            pop.n_users = len(pop.n_reports)
            pop.memo_keys = z["memo_keys"]
            pop.memo_payload = z["memo_payload"] if "memo_payload" in z else None
            pop.user_params = {k[5:]: z[k] for k in z.files if k.startswith("user_")}
        return pop
