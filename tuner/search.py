"""Search strategies: which configs to measure next.

- `RandomSearch`: unvisited points uniformly at random.
- `ModelSearch`: the XGBoost ranking model (model.py), refitted after every batch, scores
  candidates, leaving out those whose features exceed the device's limits; spaces of up to
  `exhaustive_limit` points are scored whole (features are cached, and computed in parallel),
  larger ones explored by simulated annealing
  (parallel chains over neighbouring points, started from the best measured points); a
  diversity filter keeps a batch from crowding one corner (picked points differ in at least
  two knobs while enough such points exist); a fraction `eps` of each batch is random
  (epsilon-greedy). Until the model can be fitted (records of this workload, or of other
  shapes of the operator for transfer) it picks at random.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from sched_dsl.tuner.model import CostModel
from sched_dsl.tuner.space import Point, Space

Featurize = Callable[[list[Point]], list[list[float] | None]]


class RandomSearch:
    name = "random"

    def __init__(self, space: Space, rng: random.Random):
        self.space, self.rng = space, rng
        self._order: list[Point] | None = None

    def _unvisited(self, visited: set[Point], n: int) -> list[Point]:
        if n <= 0:
            return []
        if len(self.space) <= 200_000:
            if self._order is None:
                self._order = list(self.space.all_points())
                self.rng.shuffle(self._order)
            out = []
            for p in self._order:
                if p not in visited:
                    out.append(p)
                    if len(out) == n:
                        break
            return out
        out: list[Point] = []
        for _ in range(100 * n):
            p = self.space.random_point(self.rng)
            if p not in visited and p not in out:
                out.append(p)
                if len(out) == n:
                    break
        return out

    def propose(self, n: int, visited: set[Point]) -> list[Point]:
        return self._unvisited(visited, n)

    def observe(self, points: Sequence[Point], features: Sequence, costs: Sequence[float | None]) -> None:
        pass


class ModelSearch(RandomSearch):
    name = "xgb"

    def __init__(self, space: Space, rng: random.Random, featurize: Featurize,
                 transfer: Sequence[tuple[list, list]] = (), eps: float = 0.1, exhaustive_limit: int = 4096,
                 chains: int = 16, steps: int = 24, model: CostModel | None = None,
                 legal: Callable[[list[float]], bool] | None = None, features: dict | None = None):
        super().__init__(space, rng)
        self.legal = legal  # a cheap check of device limits on the features
        self.featurize_many, self.transfer = featurize, list(transfer)
        self.eps, self.exhaustive_limit, self.chains, self.steps = eps, exhaustive_limit, chains, steps
        self.model = model or CostModel(seed=rng.randrange(1 << 30))
        self.rows: list[list[float]] = []
        self.costs: list[float | None] = []
        self.measured: list[tuple[Point, float | None]] = []
        # features of every point met, by point (a dict shared by runs over one space, if given)
        self.features: dict[Point, list[float] | None] = {} if features is None else features
        if self.transfer:
            self.model.fit(self.transfer)

    # -- model ---------------------------------------------------------------------------------
    def observe(self, points, features, costs) -> None:
        for p, f, c in zip(points, features, costs):
            self.measured.append((p, c))
            if f is not None:
                self.features[p] = f
                self.rows.append(f)
                self.costs.append(c)
        if any(c is not None for c in self.costs):
            self.model.fit(self.transfer + [(self.rows, self.costs)])

    def featurize(self, points: list[Point]) -> list[list[float] | None]:
        todo = [p for p in dict.fromkeys(points) if p not in self.features]
        if todo:
            for p, f in zip(todo, self.featurize_many(todo)):
                self.features[p] = f
        return [self.features[p] for p in points]

    def score(self, points: list[Point]) -> np.ndarray:
        """Model scores (higher is faster); -inf for points that do not lower."""
        feats = self.featurize(points)
        ok = [k for k, f in enumerate(feats) if f is not None and len(f) == self.model.n_features
              and (self.legal is None or self.legal(f))]
        out = np.full(len(points), -np.inf)
        if ok:
            out[ok] = self.model.predict([feats[k] for k in ok])
        return out

    # -- search ---------------------------------------------------------------------------------
    def _anneal(self, visited: set[Point], want: int) -> dict[Point, float]:
        """Simulated annealing over the model's scores; returns the unvisited points met, with scores."""
        seen: dict[Point, float] = {}
        good = sorted((c, p) for p, c in self.measured if c is not None)
        starts = [p for _, p in good[: self.chains // 2]]
        while len(starts) < self.chains:
            starts.append(self.space.random_point(self.rng))
        current = list(starts)
        cur_scores = list(self.score(current))
        finite = [s for s in cur_scores if np.isfinite(s)]
        scale = float(np.std(finite)) if len(finite) > 1 and np.std(finite) > 0 else 1.0
        for p, s in zip(current, cur_scores):
            if p not in visited and np.isfinite(s):
                seen[p] = s
        for step in range(self.steps):
            temp = scale * max(0.02, 1.0 - step / self.steps)
            proposals = [self.space.neighbour(p, self.rng) for p in current]
            scores = self.score(proposals)
            for k, (q, s) in enumerate(zip(proposals, scores)):
                if not np.isfinite(s):
                    continue
                if q not in visited:
                    seen[q] = float(s)
                delta = s - cur_scores[k]
                if delta >= 0 or not np.isfinite(cur_scores[k]) or self.rng.random() < math.exp(delta / temp):
                    current[k], cur_scores[k] = q, s
            if len(seen) >= 20 * want and step >= self.steps // 2:
                break
        return seen

    def _diverse(self, ranked: list[Point], n: int) -> list[Point]:
        """The best-ranked points, skipping those within one knob of a point already picked
        while there are enough others."""
        picked: list[Point] = []
        for p in ranked:
            if len(picked) == n:
                break
            if all(sum(a != b for a, b in zip(p, q)) >= 2 for q in picked):
                picked.append(p)
        for p in ranked:
            if len(picked) == n:
                break
            if p not in picked:
                picked.append(p)
        return picked

    def propose(self, n: int, visited: set[Point]) -> list[Point]:
        if not self.model.fitted:
            return self._unvisited(visited, n)
        n_random = sum(self.rng.random() < self.eps for _ in range(n))
        n_model = n - n_random
        if len(self.space) <= self.exhaustive_limit:
            pool = [p for p in self.space.all_points() if p not in visited]
            scores = self.score(pool)
            cands = {p: s for p, s in zip(pool, scores) if np.isfinite(s)}
        else:
            cands = self._anneal(visited, n_model)
        ranked = sorted(cands, key=lambda p: -cands[p])
        chosen = self._diverse(ranked, n_model)
        taken = set(visited) | set(chosen)
        chosen += self._unvisited(taken, n - len(chosen))
        return chosen
