"""Faults in a Dask worker for the distributed tuner's tests (hook="dist_faults:kill"): the
value of knob "t" picks the fault; the marker directory is $SCHED_DSL_FAULT_DIR."""

import os

KILL_ONCE, KILL_ALWAYS = 4, 8


def kill(event, config, value):
    if event != "measure":
        return value
    t = config.get("t")
    if t == KILL_ONCE:
        marker = os.path.join(os.environ["SCHED_DSL_FAULT_DIR"], "killed_once")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)  # the Dask worker process dies in the middle of the measurement
    if t == KILL_ALWAYS:
        os._exit(3)
    return value
