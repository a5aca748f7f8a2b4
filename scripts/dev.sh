#!/usr/bin/env bash
# Sets up sched-dsl on this machine (idempotent), then runs a job:
#   scripts/dev.sh demo   the quick start: a scheduled matmul and conv2d, built, shown briefly, run, checked
#   scripts/dev.sh test   the whole test suite
# Set-up: a virtual environment in .venv with the package and its test tools (installed again
# only when pyproject.toml changed), and, when no OpenCL device is visible, PoCL (OpenCL on the
# CPU) from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-demo}
case "$job" in demo|test) ;; *) echo "usage: scripts/dev.sh demo|test" >&2; exit 2 ;; esac

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# The install is editable, so code changes need no reinstall; pyproject.toml does (dependencies,
# entry points, package-dir), and so does a checkout that moved. The stamp holds both.
stamp=.venv/sched-dsl-install.stamp
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $(pwd -P)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/sched-opt ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    echo "$wanted" > "$stamp"
fi

has_opencl_device() {
    .venv/bin/python - <<'PY' 2>/dev/null
import pyopencl as cl
raise SystemExit(0 if any(p.get_devices() for p in cl.get_platforms()) else 1)
PY
}

if ! has_opencl_device; then
    echo "no OpenCL device found: installing PoCL (OpenCL on the CPU) from Debian's packages" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq pocl-opencl-icd ocl-icd-libopencl1 >/dev/null
    has_opencl_device || { echo "still no OpenCL device after installing PoCL" >&2; exit 1; }
fi

if [ "$job" = demo ]; then
    exec .venv/bin/python examples/quickstart.py
fi
exec .venv/bin/python -m pytest -q -n 2 -p no:cacheprovider tests
