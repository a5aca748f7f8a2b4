"""The config space a schedule defines: one axis per `sched.knob` op, in schedule order.

A point is a tuple of candidate indices; `config(point)` names its values. Whether a point
is legal is decided by lowering it (the verifier and apply-schedule) and by the target
device's launch limits, in `check` (see measure.py), never by measuring it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sched_dsl.dialects import sched as S
from sched_dsl.schedule import Schedule, ScheduleError

Point = tuple[int, ...]


@dataclass(frozen=True)
class KnobAxis:
    name: str
    candidates: tuple[int, ...]


class Space:
    def __init__(self, knobs: Sequence[KnobAxis]):
        if not knobs:
            raise ScheduleError("the schedule has no knobs (s.knob / s.split_knob); there is nothing to tune")
        self.knobs = list(knobs)
        self.names = [k.name for k in knobs]

    @classmethod
    def of(cls, schedule: Schedule) -> Space:
        """The space of the sched.knob ops in the schedule's IR."""
        module = schedule.module()
        knobs = [KnobAxis(op.knob_name.data, tuple(op.candidates.get_values()))
                 for op in module.walk() if isinstance(op, S.KnobOp)]
        return cls(knobs)

    def __len__(self) -> int:
        n = 1
        for k in self.knobs:
            n *= len(k.candidates)
        return n

    def config(self, point: Point) -> dict[str, int]:
        return {k.name: k.candidates[i] for k, i in zip(self.knobs, point)}

    def point(self, config: dict[str, int]) -> Point | None:
        """The point of a config, or None when it does not fit this space."""
        if set(config) != set(self.names):
            return None
        try:
            return tuple(k.candidates.index(config[k.name]) for k in self.knobs)
        except ValueError:
            return None

    def candidates_by_name(self) -> dict[str, tuple[int, ...]]:
        return {k.name: k.candidates for k in self.knobs}

    def random_point(self, rng: random.Random) -> Point:
        return tuple(rng.randrange(len(k.candidates)) for k in self.knobs)

    def neighbour(self, p: Point, rng: random.Random) -> Point:
        """`p` with one knob moved to an adjacent candidate (or anywhere, one time in four)."""
        movable = [d for d, k in enumerate(self.knobs) if len(k.candidates) > 1]
        if not movable:
            return p
        d = rng.choice(movable)
        n = len(self.knobs[d].candidates)
        q = list(p)
        if rng.random() < 0.25:
            q[d] = rng.choice([i for i in range(n) if i != p[d]])
        else:
            q[d] = min(n - 1, max(0, p[d] + rng.choice((-1, 1))))
            if q[d] == p[d]:
                q[d] = p[d] - 1 if p[d] > 0 else p[d] + 1
        return tuple(q)

    def all_points(self) -> Iterator[Point]:
        def rec(d: int, prefix: tuple) -> Iterator[Point]:
            if d == len(self.knobs):
                yield prefix
                return
            for i in range(len(self.knobs[d].candidates)):
                yield from rec(d + 1, prefix + (i,))
        return rec(0, ())
