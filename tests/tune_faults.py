"""Fault injection for the tuner's tests: the measurer calls `inject` in its build pool and
run worker (hook="tune_faults:inject"); the value of knob "t" picks the fault."""

import os
import time

FAULTS = {2: "compile_error", 4: "runtime_error", 8: "wrong_answer", 16: "timeout", 32: "crash", 256: "build_timeout"}


def inject(event, config, value):
    fault = FAULTS.get(config.get("t"))
    if event == "build":
        if fault == "build_timeout":
            time.sleep(60)
        return value
    if event == "source":
        if fault == "compile_error":
            return value + "\nthis is not C;\n"
        if fault == "timeout":
            time.sleep(60)
        if fault == "crash":
            os._exit(7)
        return value
    if event == "run":
        if fault == "runtime_error":
            raise RuntimeError("injected launch failure")
        if fault == "wrong_answer":
            return [o * 2 + 1 for o in value]
    return value


def slow(event, config, value):
    """Slows every run down, so a test can kill a tuner in the middle."""
    if event == "source":
        time.sleep(0.3)
    return value


def stuck(event, config, value):
    """Every run takes a minute; the run worker first touches $SCHED_DSL_TEST_MARK (so a test
    can kill the tuner while its worker is busy)."""
    if event == "source":
        open(os.environ["SCHED_DSL_TEST_MARK"], "w").close()
        time.sleep(60)
    return value
