"""Every test session gets a kernel cache of its own (sched_dsl.runtime.cache), shared by its
workers and removed at the end, unless SCHED_DSL_CACHE is already set. Every test process sees
two OpenCL CPU devices (PoCL), set before anything reads the platform: the multi-device tests
pin one worker or one part of a model to each."""

import os
import shutil
import tempfile

os.environ.setdefault("POCL_DEVICES", "pthread pthread")
_made: list[str] = []


def pytest_configure(config):
    if "SCHED_DSL_CACHE" not in os.environ:
        _made.append(tempfile.mkdtemp(prefix="sched-dsl-test-cache-"))
        os.environ["SCHED_DSL_CACHE"] = _made[0]


def pytest_unconfigure(config):
    for d in _made:
        shutil.rmtree(d, ignore_errors=True)
