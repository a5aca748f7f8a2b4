"""Runs the lit/FileCheck tests under tests/filecheck as part of the pytest suite."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FILECHECK_DIR = Path(__file__).parent / "filecheck"


def lit_command() -> list[str]:
    # the lit of this very environment, not whichever one is first on PATH
    exe = Path(sys.executable).parent / "lit"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("lit")
    if found is None:
        pytest.fail("lit is not installed; install sched-dsl[test]")
    return [found]


def test_filecheck_suite():
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    proc = subprocess.run(
        [*lit_command(), "-v", str(FILECHECK_DIR)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "Passed" in report, report
