"""lit configuration for the FileCheck tests of sched-opt's passes, targets and diagnostics.

Tools are taken from the environment lit runs in: the directory of lit's own Python comes
first on PATH, so `lit tests/filecheck` from a virtual environment uses its sched-opt,
xdsl-opt and filecheck even when that environment is not activated."""

import os
import shutil
import sys

import lit.formats

config.name = "sched-dsl"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["lit.cfg.py", "Output"]

env_bin = os.path.dirname(sys.executable)
path = os.pathsep.join([env_bin, os.environ.get("PATH", "")])
config.environment["PATH"] = path
for var in ("HOME", "TMPDIR", "SCHED_DSL_DEBUG"):
    if var in os.environ:
        config.environment[var] = os.environ[var]
config.environment["NO_COLOR"] = "1"


def tool(name):
    found = shutil.which(name, path=path)
    if found is None:
        lit_config.fatal(f"'{name}' was not found on PATH ({path}); install sched-dsl with its test extras")
    return found


for name in ("sched-opt", "xdsl-opt", "filecheck"):
    config.substitutions.append((f"{name} ", f"{tool(name)} "))
