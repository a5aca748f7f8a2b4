"""Every script in examples/ runs to the end (each checks its own results). Scripts that
default to the CUDA target run here on OpenCL (PoCL on CPU machines), at sizes a CPU manages."""

import pathlib
import subprocess
import sys
import tempfile

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
CPU_ARGS = {
    "sgemm_schedule.py": ["256", "--target", "opencl"],
    "resnet_conv_schedule.py": ["--target", "opencl"],
    "make_models.py": ["--size", "32", "--out", tempfile.mkdtemp(prefix="sched_dsl_models_")],
}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script):
    args = CPU_ARGS.get(script.name, [])
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]


def test_make_models_help_shows_its_whole_description():
    script = EXAMPLES[0].parent / "make_models.py"
    run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # the usage lines of the description keep their own lines, and its last sentence is there
    assert "\n    python examples/make_models.py --out models --size 224\n" in run.stdout
    assert '"selected" ([batch, class, box] rows).' in run.stdout
