"""The cost model: gradient-boosted trees (XGBoost) with a pairwise ranking objective.

Each workload's records form one ranking group, labelled by relative throughput
(best cost / cost, so 1 for the group's fastest config and 0 for a config that failed), so
records of other shapes of the operator (transfer) fit into the same model without their
absolute times being comparable. Higher scores mean faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _xgboost():
    try:
        import xgboost
    except ImportError as e:
        raise RuntimeError(f"the tuner's cost model needs XGBoost ({e}); install it with "
                           "pip install 'sched-dsl[tune]'") from None
    return xgboost


class CostModel:
    def __init__(self, seed: int = 0, rounds: int = 60, max_depth: int = 6, threads: int = 1):
        self.seed, self.rounds, self.max_depth, self.threads = seed, rounds, max_depth, threads
        self.booster = None
        self.n_features: int | None = None

    @property
    def fitted(self) -> bool:
        return self.booster is not None

    def fit(self, groups: Sequence[tuple[Sequence[Sequence[float]], Sequence[float | None]]]) -> bool:
        """Fits on groups of (feature rows, costs; None for a failed config). Groups with
        fewer than two rows or no successful row teach no ranking and are left out; returns
        False (and keeps the previous fit) when nothing is left."""
        xgb = _xgboost()

        xs, ys, sizes = [], [], []
        for rows, costs in groups:
            ok = [c for c in costs if c is not None]
            if len(rows) < 2 or not ok:
                continue
            best = min(ok)
            xs.extend(rows)
            ys.extend(best / c if c is not None else 0.0 for c in costs)
            sizes.append(len(rows))
        if not sizes:
            return False
        x = np.asarray(xs, dtype=np.float32)
        dtrain = xgb.DMatrix(x, label=np.asarray(ys, dtype=np.float32))
        dtrain.set_group(sizes)
        params = {"objective": "rank:pairwise", "eta": 0.3, "max_depth": self.max_depth, "min_child_weight": 1,
                  "subsample": 1.0, "gamma": 1e-4, "seed": self.seed, "nthread": self.threads,
                  "verbosity": 0}
        self.booster = xgb.train(params, dtrain, num_boost_round=self.rounds)
        self.n_features = x.shape[1]
        return True

    def predict(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        xgb = _xgboost()

        if not self.fitted:
            raise RuntimeError("the cost model is not fitted yet")
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        return self.booster.predict(xgb.DMatrix(x))
