"""The knob tuner: config spaces from sched.knob ops, loop-IR features, an XGBoost ranking
model with simulated annealing, isolated measurement and durable JSON-lines records."""

from sched_dsl.tuner.measure import Measurer
from sched_dsl.records import ERROR_CLASSES, Record, RecordsError, Workload, best, load, merge, workload_of
from sched_dsl.tuner.space import Space
from sched_dsl.tuner.tuner import STRATEGIES, TuneResult, tune

__all__ = ["ERROR_CLASSES", "Measurer", "Record", "RecordsError", "STRATEGIES", "Space", "TuneResult", "Workload",
           "best", "load", "merge", "tune", "workload_of"]
