"""Records files under faults (issue 15, items 13-17): an unwritable or full records path, a
device file, bad records (NaN, negative or nested costs, configs of another schedule), two
tuners on one file, and killed tuners' workers. Clear errors, checked before measuring where
possible; nothing written is lost; no config is measured twice."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import sched_dsl as sd
from sched_dsl import records as R
from sched_dsl.tuner.cli import main as tune_cli

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tune_spaces import matmul_space  # noqa: E402

FAST = dict(workers=1, repeat=1, warmup=0, timeout=20.0)
WORKLOAD = "op|A=1|opencl|dev"


def rec(cost=1.0, workload=WORKLOAD, **config):
    return R.Record(workload, config or {"t": 1}, cost)


def no_measuring(monkeypatch):
    """Makes measuring fail the test: the errors under test must come before it."""
    from sched_dsl.tuner import measure

    def refuse(self):
        raise AssertionError("measuring started")
    monkeypatch.setattr(measure.Measurer, "start", refuse)


# -- item 13: unwritable and full records paths --------------------------------------------------------

@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES], ids=["read-only", "not-writable"])
def test_unwritable_records_path_is_an_error_before_measuring(tmp_path, monkeypatch, err):
    path = tmp_path / "r.jsonl"
    R.RecordsWriter(str(path)).append([rec(t=2)])
    before = path.read_bytes()
    real_open = os.open

    def refuse(name, flags, *args, **kwargs):
        if os.fspath(name) == str(path) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(err, os.strerror(err), str(name))
        return real_open(name, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", refuse)
    no_measuring(monkeypatch)
    c, s = matmul_space()
    with pytest.raises(R.RecordsError, match=f"r.jsonl.*cannot be written.*{os.strerror(err)}"):
        sd.tune(c, s, trials=2, records=str(path), **FAST)
    assert path.read_bytes() == before


def test_full_disk_leaves_no_torn_record(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    writer = R.RecordsWriter(str(path))
    writer.append([rec(t=1), rec(t=2)])
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(R.RecordsError, match=r"r.jsonl.*No space left on device.*3 record\(s\).*not written"):
        writer.append([rec(t=3), rec(t=4), rec(t=5)])
    monkeypatch.undo()
    assert path.read_bytes() == before  # the half-written batch was cut off again
    assert [r.config["t"] for r in R.load(str(path))] == [1, 2]


def test_full_disk_while_tuning_stops_with_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    real_write = os.write

    def full(fd, data):
        if path.exists() and os.fstat(fd).st_ino == os.stat(path).st_ino:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)
    monkeypatch.setattr(R.os, "write", full)
    c, s = matmul_space()
    with pytest.raises(R.RecordsError, match="No space left on device"):
        sd.tune(c, s, trials=2, records=str(path), batch=2, strategy="random", **FAST)
    assert path.read_bytes() == b""


# -- item 14: what is not a regular file ---------------------------------------------------------------

@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo", "link-to-dev-zero"])
def test_records_path_that_is_not_a_regular_file(tmp_path, monkeypatch, special):
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    elif special == "link-to-dev-zero":
        path = str(tmp_path / "r.jsonl")
        os.symlink("/dev/zero", path)
    else:
        path = special
    with pytest.raises(R.RecordsError, match="not a regular file"):
        R.load(path)
    with pytest.raises(R.RecordsError, match="not a regular file"):
        R.RecordsWriter(path)
    no_measuring(monkeypatch)
    c, s = matmul_space()
    with pytest.raises(R.RecordsError, match="not a regular file"):
        sd.tune(c, s, trials=2, records=path, **FAST)
    with pytest.raises(R.RecordsError, match="not a regular file"):
        sd.build(c, s, records=path)


# -- item 15: records validated on read, the same rule everywhere --------------------------------------

GOOD = rec(2.0, t=1).to_json()
BAD_LINES = {
    "nan_cost": GOOD.replace('"cost_ms":2.0', '"cost_ms":NaN'),
    "inf_cost": GOOD.replace('"cost_ms":2.0', '"cost_ms":1e999'),
    "negative_cost": GOOD.replace('"cost_ms":2.0', '"cost_ms":-1.0'),
    "bool_cost": GOOD.replace('"cost_ms":2.0', '"cost_ms":true'),
    "string_config_value": GOOD.replace('"t":1', '"t":"8,t=4"'),
    "float_config_value": GOOD.replace('"t":1', '"t":2.5'),
    "huge_config_value": GOOD.replace('"t":1', '"t":' + "9" * 30),
    "bad_knob_name": GOOD.replace('"t":1', '"t=4,u":1'),
    "nan_feature": GOOD.replace('"features":null', '"features":[1.0,NaN]'),
    "deep": '{"workload":' + "[" * 100_000 + "]" * 100_000 + "}",
    "trial": GOOD.replace('"trial":0', '"trial":"x"'),
    "long_int": GOOD.replace('"trial":0', '"trial":' + "9" * 5000),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_record_is_an_error_naming_file_and_line(tmp_path, case):
    path = tmp_path / "r.jsonl"
    path.write_text(GOOD + "\n" + BAD_LINES[case] + "\n" + GOOD + "\n")
    with pytest.raises(R.RecordsError, match=r"r.jsonl:2: "):
        R.load(str(path))


def test_bad_record_is_the_same_error_in_every_reader(tmp_path, capsys, monkeypatch):
    path = tmp_path / "r.jsonl"
    path.write_text(GOOD + "\n" + BAD_LINES["nan_cost"] + "\n")
    for argv in (["best", str(path)], ["plot", str(path), "--out", str(tmp_path / "p.png")],
                 ["merge", str(tmp_path / "out.jsonl"), str(path)]):
        assert tune_cli(argv) == 1
        err = capsys.readouterr().err
        assert "r.jsonl:2: " in err and "cost_ms" in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""
    c, s = matmul_space()
    with pytest.raises(R.RecordsError, match="r.jsonl:2: "):
        sd.build(c, s, records=str(path))
    no_measuring(monkeypatch)
    with pytest.raises(R.RecordsError, match="r.jsonl:2: "):
        sd.tune(c, s, trials=2, records=str(path), **FAST)
    with pytest.raises(R.RecordsError, match="r.jsonl:2: "):
        sd.tune(c, s, trials=2, transfer=[str(path)], **FAST)


def test_best_keeps_configs_of_other_schedules_apart(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    R.RecordsWriter(str(path)).append([rec(2.0, ti=4, tj=8), rec(3.0, ti=8, tj=8), rec(0.5, threads=64)])
    assert tune_cli(["best", str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(tuple(d["config"]), d["cost_ms"]) for d in lines} == {(("ti", "tj"), 2.0), (("threads",), 0.5)}


# -- item 16: one tuner at a time on a records file -------------------------------------------------------

def test_a_second_tuner_on_the_same_records_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sched_dsl.records import RecordsWriter\n"
         "w = RecordsWriter(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        no_measuring(monkeypatch)
        c, s = matmul_space()
        with pytest.raises(R.RecordsError, match=rf"r.jsonl' is being written by another tuner \(process {holder.pid}, "):
            sd.tune(c, s, trials=2, records=str(path), **FAST)
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.undo()
    R.RecordsWriter(str(path)).close()  # the lock went with the process that held it


def test_two_tuners_started_together_never_measure_a_config_twice(tmp_path):
    path = tmp_path / "r.jsonl"
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import sched_dsl as sd\n"
        "from sched_dsl.records import RecordsError\n"
        "from tune_spaces import matmul_space\n"
        "c, s = matmul_space()\n"
        "try:\n"
        "    r = sd.tune(c, s, trials=6, records=%r, batch=2, strategy='random', seed=int(sys.argv[1]),"
        " workers=1, repeat=1, warmup=0)\n"
        "    print('tuned', r.trials - r.resumed)\n"
        "except RecordsError as e:\n"
        "    print('refused', e)\n" % (HERE, str(path)))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    said = sorted(out.split()[0] for out, _ in outs)
    assert said in (["refused", "tuned"], ["tuned", "tuned"]), outs
    keys = [r.config_key() for r in R.load(str(path))]
    assert len(keys) == len(set(keys)) == 6


# -- item 17: killed tuners' workers exit quietly ----------------------------------------------------------

def test_workers_of_a_killed_tuner_exit_quietly(tmp_path):
    """The tuner is killed while its run worker is in the middle of a (minute-long) run: the
    worker ends with it, and nothing is written on stderr."""
    mark = tmp_path / "running"
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import sched_dsl as sd\n"
        "from tune_spaces import matmul_space\n"
        "c, s = matmul_space()\n"
        "sd.tune(c, s, trials=4, records=%r, batch=2, strategy='random', hook='tune_faults:stuck', workers=1,"
        " repeat=1, warmup=0, timeout=300)\n" % (HERE, str(tmp_path / "r.jsonl")))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "SCHED_DSL_TEST_MARK": str(mark)})
    deadline = time.time() + 120
    while time.time() < deadline and not mark.exists():
        time.sleep(0.05)
    assert mark.exists(), "the run worker never started a run"
    os.kill(proc.pid, signal.SIGKILL)
    err = proc.communicate(timeout=60)[1]
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("a worker of the killed tuner was still running")
