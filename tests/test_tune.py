"""The tuner: knob spaces, features, the XGBoost model and search, records and their tools,
measurement with every error class (injected faults), resume after a kill, sd.tune,
sd.build(records=...) and the sched-tune CLI. Measurements run on the default OpenCL device
(PoCL on CPU machines) with small spaces."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sched_dsl as sd
from sched_dsl import records as R
from sched_dsl.tuner.cli import main as tune_cli
from sched_dsl.tuner.features import FEATURE_NAMES, loop_only_features, lower_with_features
from sched_dsl.tuner.model import CostModel
from sched_dsl.tuner.search import ModelSearch, RandomSearch
from sched_dsl.tuner.space import Space

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tune_spaces import fault_space, matmul_space  # noqa: E402

FAST = dict(workers=1, repeat=2, warmup=1, timeout=20.0)


# -- knobs and spaces ------------------------------------------------------------------------

def test_split_knob_candidates_and_errors():
    c, s = matmul_space(48, 32, 16)
    assert s.knobs["ti"].candidates == (2, 4, 8, 16)
    t = s.split_knob("d", 48, "divisors", lo=3, hi=16)
    assert t.candidates == (3, 4, 6, 8, 12, 16)
    assert 'sched.knob "d" [3, 4, 6, 8, 12, 16] divisors of 48' in s.ir()
    with pytest.raises(sd.ScheduleError, match="kind 'odd'"):
        s.split_knob("e", 48, "odd")
    with pytest.raises(sd.ScheduleError, match="no divisors of 7 lies in"):
        s.split_knob("e", 7, "divisors", lo=2, hi=6)
    with pytest.raises(sd.ScheduleError, match="defined twice"):
        s.split_knob("ti", 8)


def test_space_from_ir():
    c, s = matmul_space()
    space = Space.of(s)
    assert space.names == ["ti", "tj"] and len(space) == 16
    assert space.config((1, 3)) == {"ti": 4, "tj": 16}
    assert space.point({"ti": 4, "tj": 16}) == (1, 3)
    assert space.point({"ti": 5, "tj": 16}) is None and space.point({"ti": 4}) is None
    rng = random.Random(0)
    for _ in range(20):
        p = space.random_point(rng)
        q = space.neighbour(p, rng)
        assert q != p and sum(a != b for a, b in zip(p, q)) == 1
    with pytest.raises(sd.ScheduleError, match="no knobs"):
        Space.of(sd.Schedule(c))


def test_features_follow_the_loop_ir():
    c, s = matmul_space(32, 32, 16)
    small = dict(zip(FEATURE_NAMES, loop_only_features(c, s, {"ti": 2, "tj": 4})))
    big = dict(zip(FEATURE_NAMES, loop_only_features(c, s, {"ti": 16, "tj": 16})))
    assert small["threads_per_block"] == pytest.approx(np.log2(1 + 8))
    assert big["threads_per_block"] == pytest.approx(np.log2(1 + 256))
    assert small["blocks"] == pytest.approx(np.log2(1 + 16 * 8))
    # the same multiply-adds in total, whatever the tiling
    assert small["flops_total"] == big["flops_total"] == pytest.approx(np.log2(1 + 2 * 32 * 32 * 16))
    lowered, feats = lower_with_features(c, s, "opencl", {"ti": 2, "tj": 4})
    assert feats == loop_only_features(c, s, {"ti": 2, "tj": 4})
    assert lowered.launches[0].block == (4, 2, 1)
    # knob values close the vector, as log2
    assert feats[-2:] == [1.0, 2.0]


# -- model and search ------------------------------------------------------------------------------

def _synthetic(shape_scale: float, n: int = 60, seed: int = 0):
    """Feature rows and costs where cost depends on the features in the same way for every
    shape (only the scale differs)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 5, size=(n, 4))
    cost = shape_scale * (1 + (x[:, 0] - 3) ** 2 + 0.5 * np.abs(x[:, 1] - 1))
    return x.tolist(), cost.tolist()


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_model_ranks_and_transfers_across_shapes():
    rows, costs = _synthetic(1.0, seed=1)
    model = CostModel(seed=0)
    assert not model.fit([(rows[:1], costs[:1])])  # one row teaches no ranking
    assert model.fit([(rows, costs)])
    test_rows, test_costs = _synthetic(1.0, seed=2)
    assert _spearman(-model.predict(test_rows), test_costs) > 0.8
    # fitted on another "shape" only (times 100x larger), it still ranks this one
    other = CostModel(seed=0)
    other.fit([_synthetic(100.0, seed=3), _synthetic(7.0, seed=4)])
    assert _spearman(-other.predict(test_rows), test_costs) > 0.8
    # a failed config (cost None) ranks below every measured one
    rows2 = rows + [[3.0, 1.0, 0.0, 0.0]]
    failed = CostModel(seed=0)
    failed.fit([(rows2, costs + [None])])
    scores = failed.predict(rows2)
    assert scores[-1] < np.median(scores)


def _grid_problem():
    """A 3-knob space of 8 x 8 x 4 points with a known cost; the features are the knob values."""
    from sched_dsl.tuner.space import KnobAxis
    space = Space([KnobAxis("a", tuple(range(8))), KnobAxis("b", tuple(range(8))), KnobAxis("c", (0, 1, 2, 3))])

    def cost(p):
        a, b, c = p
        return 1.0 + (a - 5) ** 2 + 0.7 * (b - 2) ** 2 + 2 * (c != 1) + 0.1 * a * c

    def featurize(points):
        return [[float(v) for v in p] for p in points]
    return space, cost, featurize


def _trials_to_best(search, space, cost, batch=8, budget=256) -> int:
    best = min(cost(p) for p in space.all_points())
    visited: set = set()
    n = 0
    while n < budget:
        pts = search.propose(batch, visited)
        assert pts and len(pts) == len(set(pts)) and not visited & set(pts)  # never a point twice
        visited.update(pts)
        costs = [cost(p) for p in pts]
        for c in costs:
            n += 1
            if c == best:
                return n
        search.observe(pts, [[float(v) for v in p] for p in pts], costs)
    return budget


@pytest.mark.parametrize("exhaustive_limit", [4096, 16], ids=["scored-whole", "annealing"])
def test_model_search_needs_fewer_trials_than_random(exhaustive_limit):
    space, cost, featurize = _grid_problem()
    model_trials, random_trials = [], []
    for seed in range(5):
        ms = ModelSearch(space, random.Random(seed), featurize, eps=0.1, exhaustive_limit=exhaustive_limit)
        model_trials.append(_trials_to_best(ms, space, cost))
        random_trials.append(_trials_to_best(RandomSearch(space, random.Random(seed)), space, cost))
    assert np.median(model_trials) * 2 < np.median(random_trials), (model_trials, random_trials)


def test_transfer_seeds_the_first_batch():
    space, cost, featurize = _grid_problem()
    other = [p for p in space.all_points()][::3]
    seeded = ModelSearch(space, random.Random(0), featurize,
                         transfer=[(featurize(other), [10 * cost(p) for p in other])], eps=0.0)
    assert seeded.model.fitted
    first = seeded.propose(8, set())
    unseeded = RandomSearch(space, random.Random(0)).propose(8, set())
    assert np.mean([cost(p) for p in first]) < np.mean([cost(p) for p in unseeded]) / 2


def test_diversity_filter():
    space, cost, featurize = _grid_problem()
    ms = ModelSearch(space, random.Random(0), featurize)
    ranked = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (3, 3, 3), (0, 0, 2)]
    assert ms._diverse(ranked, 2) == [(0, 0, 0), (3, 3, 3)]
    assert ms._diverse(ranked, 4)[:2] == [(0, 0, 0), (3, 3, 3)] and len(ms._diverse(ranked, 4)) == 4


# -- records ---------------------------------------------------------------------------------------------

def _rec(workload="op|A=1|opencl|dev", cost=1.0, error=None, **config):
    return R.Record(workload, config or {"t": 1}, cost if error is None else None, error)


def test_records_round_trip_best_and_merge(tmp_path):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out.jsonl"
    R.RecordsWriter(str(a)).append([_rec(cost=2.0, t=1), _rec(cost=1.0, t=2), _rec(error="timeout", t=3)])
    R.RecordsWriter(str(b)).append([_rec(cost=0.5, t=3), _rec("op|A=2|opencl|dev", 4.0, t=1), _rec(cost=3.0, t=1)])
    got = R.load(str(a))
    assert [r.config["t"] for r in got] == [1, 2, 3] and got[2].error == "timeout" and not got[2].ok
    assert R.best(got)["op|A=1|opencl|dev"].config == {"t": 2}
    assert R.merge([str(a), str(b)], str(out)) == 4
    merged = {(r.workload, r.config["t"]): r for r in R.load(str(out))}
    assert merged[("op|A=1|opencl|dev", 3)].cost_ms == 0.5  # a measurement beats an error
    assert merged[("op|A=1|opencl|dev", 1)].cost_ms == 2.0  # the faster of two
    assert merged[("op|A=2|opencl|dev", 1)].cost_ms == 4.0


def test_merge_keeps_one_record_per_config_and_is_idempotent(tmp_path, monkeypatch):
    a, b, out = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out.jsonl"
    R.RecordsWriter(str(a)).append([_rec(cost=2.0, t=1), _rec(cost=1.0, t=1), _rec(error="timeout", t=2)])
    R.RecordsWriter(str(b)).append([_rec(cost=0.5, t=2), _rec("op|A=2|opencl|dev", 4.0, t=1)])
    assert R.merge([str(a)], str(out)) == 2
    first = out.read_bytes()
    assert R.merge([str(a)], str(out)) == 2 and out.read_bytes() == first  # again: nothing changes
    assert R.merge([str(out)], str(out)) == 2 and out.read_bytes() == first  # into itself: likewise
    assert R.merge([str(b), str(a)], str(out)) == 3
    merged = {(r.workload, r.config["t"]): r for r in R.load(str(out))}
    assert set(merged) == {("op|A=1|opencl|dev", 1), ("op|A=1|opencl|dev", 2), ("op|A=2|opencl|dev", 1)}
    assert merged[("op|A=1|opencl|dev", 1)].cost_ms == 1.0 and merged[("op|A=1|opencl|dev", 2)].cost_ms == 0.5
    # the output's own records stay, and a cut-short last line of it is set aside, not lost
    with open(out, "a") as f:
        f.write('{"workload":"op|A=1')
    with pytest.warns(UserWarning, match="cut short"):
        assert R.merge([str(a)], str(out)) == 3
    assert (tmp_path / "out.jsonl.partial").read_text() == '{"workload":"op|A=1\n'
    # written atomically: a failure before the rename leaves the old file and no temporary one
    before = out.read_bytes()
    monkeypatch.setattr(R.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(R.RecordsError, match="out.jsonl' cannot be written \\(disk full\\); it is left as it was"):
        R.merge([str(b)], str(out))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == \
        ["a.jsonl", "b.jsonl", "out.jsonl", "out.jsonl.partial"]


def test_plot_title_fits_ticks_are_plain_and_the_legend_names_the_strategy(tmp_path):
    import matplotlib.pyplot as plt

    from sched_dsl.tuner.plot import figure, plot_curves

    title = "matmul|A=256x256,B=256x256|opencl|Portable Computing Language pthread-Intel(R) Xeon(R) CPU @ 2.00GHz"
    for curve in ([0.0213, 0.0201, 0.0201, 0.0199], [3.0, 1.2, 0.4, 0.05]):  # a narrow range, and decades
        fig = figure({"xgb": [curve], "random": [curve[::-1]]}, title)
        fig.canvas.draw()
        ax = fig.axes[0]
        box, page = ax.title.get_window_extent(), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1
        assert ax.yaxis.get_offset_text().get_text() == ""
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert len(labels) >= 2 and all(float(t) > 0 for t in labels), labels  # plain numbers: no 10^k, no 2e-2
        assert all(float(t.get_text()).is_integer() for t in ax.get_xticklabels() if t.get_text())  # whole trials
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["XGBoost-guided search (1 run)", "random search (1 run)"]
        plt.close(fig)
    plot_curves({"xgb": [[1.0, 0.5]]}, str(tmp_path / "c.png"), title=title)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_records_bad_input(tmp_path):
    with pytest.raises(R.RecordsError, match="is a directory"):
        R.load(str(tmp_path))
    with pytest.raises(R.RecordsError, match="is a directory"):
        R.RecordsWriter(str(tmp_path))
    with pytest.raises(R.RecordsError, match="does not exist"):
        R.load(str(tmp_path / "none.jsonl"))
    with pytest.raises(R.RecordsError, match="directory .* does not exist"):
        R.RecordsWriter(str(tmp_path / "no" / "x.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_rec().to_json() + "\n{oops\n" + _rec().to_json() + "\n")
    with pytest.raises(R.RecordsError, match=r"bad.jsonl:2: not a JSON record"):
        R.load(str(bad))
    bad.write_text('{"workload": "w", "config": {"t": 1}, "error": "exploded"}\n')
    with pytest.raises(R.RecordsError, match="unknown error class 'exploded'"):
        R.load(str(bad))
    bad.write_text('{"workload": "w", "config": {"t": 1}}\n')
    with pytest.raises(R.RecordsError, match="needs a numeric 'cost_ms'"):
        R.load(str(bad))
    bad.write_text('[1, 2]\n')
    with pytest.raises(R.RecordsError, match="needs a 'workload' string"):
        R.load(str(bad))


def test_cut_short_last_line_is_set_aside_not_lost(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = _rec(t=1).to_json() + "\n"
    cut = _rec(t=2).to_json()[:25]
    path.write_text(whole + cut)
    with pytest.warns(UserWarning, match="cut short"):
        assert [r.config for r in R.load(str(path))] == [{"t": 1}]
    with pytest.warns(UserWarning, match="moved it to .*partial"):
        w = R.RecordsWriter(str(path))
    w.append([_rec(t=3)])
    assert path.read_text().startswith(whole)
    assert [r.config for r in R.load(str(path))] == [{"t": 1}, {"t": 3}]
    assert (tmp_path / "r.jsonl.partial").read_text() == cut + "\n"


def test_gzipped_records_are_read_not_appended(tmp_path):
    import gzip
    plain = tmp_path / "r.jsonl"
    R.RecordsWriter(str(plain)).append([_rec(cost=2.0, t=1), _rec(error="timeout", t=2)])
    packed = tmp_path / "r.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert [(r.config, r.cost_ms, r.error) for r in R.load(str(packed))] == \
        [(r.config, r.cost_ms, r.error) for r in R.load(str(plain))]
    with pytest.raises(R.RecordsError, match="appended to plain files, not .gz"):
        R.RecordsWriter(str(packed))
    assert packed.read_bytes()[:2] == b"\x1f\x8b"  # left as it was
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all\n")
    with pytest.raises(R.RecordsError, match="broken.jsonl.gz' cannot be read"):
        R.load(str(broken))


# -- measuring and tuning on the OpenCL device -------------------------------------------------------------

def test_every_error_class_through_injected_faults(tmp_path):
    c, s = fault_space()
    path = tmp_path / "faults.jsonl"
    result = sd.tune(c, s, trials=8, records=str(path), strategy="random", batch=9, hook="tune_faults:inject",
                     workers=1, repeat=1, warmup=0, timeout=8.0, build_timeout=6.0)
    by_t = {r.config["t"]: r for r in R.load(str(path))}
    assert set(by_t) == {2, 4, 8, 16, 32, 64, 128, 256, 8192}
    assert by_t[8192].error == "invalid" and "threads per block" in by_t[8192].message
    assert by_t[2].error == "compile_error" and "does not compile" in by_t[2].message
    assert by_t[4].error == "runtime_error" and "injected launch failure" in by_t[4].message
    assert by_t[8].error == "wrong_answer"
    assert by_t[16].error == "timeout" and "no result within 8 s" in by_t[16].message
    assert by_t[32].error == "runtime_error" and "exit code 7" in by_t[32].message
    assert by_t[256].error == "timeout" and "building took longer" in by_t[256].message
    assert by_t[64].ok and by_t[128].ok  # measured after the crash and the timeout
    assert result.trials == 8 and result.invalid == 1
    assert result.errors == {"invalid": 1, "compile_error": 1, "runtime_error": 2, "wrong_answer": 1, "timeout": 2}
    assert result.best_config in ({"t": 64}, {"t": 128})
    assert by_t[8192].trial == 0 and sorted(r.trial for r in by_t.values() if r.error != "invalid") == list(range(1, 9))


def test_tune_resumes_after_sigkill_without_measuring_twice(tmp_path):
    path = tmp_path / "kill.jsonl"
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import sched_dsl as sd\n"
        "from tune_spaces import matmul_space\n"
        "c, s = matmul_space()\n"
        "sd.tune(c, s, trials=16, records=%r, batch=2, strategy='random', seed=1, hook='tune_faults:slow',"
        " workers=1, repeat=1, warmup=0)\n" % (HERE, str(path)))
    # started outside the checkout, so it imports the package the tests import (not a folder in the cwd)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if path.exists() and path.read_text().count("\n") >= 4:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = path.read_text()
    assert before.count("\n") >= 4
    # the kill may have cut a line short; make sure one is
    cut = '{"workload":"x","config":{"ti":'
    with open(path, "a") as f:
        f.write(cut)
    seen = []
    c, s = matmul_space()
    with pytest.warns(UserWarning, match="cut short"):
        result = sd.tune(c, s, trials=16, records=str(path), batch=4, seed=2, progress=lambda r: seen.append(r.trials),
                         **FAST)
    after = path.read_text()
    assert after.startswith(before)  # nothing written is lost
    assert (tmp_path / "kill.jsonl.partial").read_text() == cut + "\n"
    recs = R.load(str(path))
    keys = [r.config_key() for r in recs]
    assert len(keys) == len(set(keys)) == 16  # every config once
    assert result.resumed == before.count("\n") and seen[0] == result.resumed
    assert result.trials == 16 and len(result.curve) == 16
    assert result.best_ms == min(r.cost_ms for r in recs if r.ok)
    # tuning again with the same budget measures nothing
    again = sd.tune(c, s, trials=16, records=str(path), **FAST)
    assert again.resumed == 16 and path.read_text() == after


def test_build_with_records_uses_the_best_config(tmp_path):
    c, s = matmul_space()
    from sched_dsl.runtime import device_name
    wl = R.workload_of([c], "opencl", device_name("opencl"))
    path = tmp_path / "r.jsonl"
    R.RecordsWriter(str(path)).append([
        R.Record(wl.key, {"ti": 2, "tj": 4}, 3.0), R.Record(wl.key, {"ti": 8, "tj": 16}, 1.0),
        R.Record(wl.key, {"ti": 4, "tj": 4}, None, "wrong_answer"),
        R.Record(wl.key.replace("A=32x16", "A=64x16"), {"ti": 16, "tj": 2}, 0.1)])
    kern = sd.build(c, s, records=str(path))
    assert kern.lowered.launches[0].block == (16, 8, 1)
    a, b = np.random.rand(32, 16).astype(np.float32), np.random.rand(16, 32).astype(np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-4)
    other, s2 = matmul_space(16, 16, 16)
    with pytest.raises(R.RecordsError, match="no record for workload 'matmul|A=16x16"):
        sd.build(other, s2, records=str(path))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(R.RecordsError, match="holds no records"):
        sd.build(c, s, records=str(empty))
    with pytest.raises(R.RecordsError, match="is a directory"):
        sd.build(c, s, records=str(tmp_path))
    with pytest.raises(ValueError, match="either config or records"):
        sd.build(c, s, config={"ti": 2}, records=str(path))


def test_tune_argument_errors(tmp_path):
    c, s = matmul_space()
    with pytest.raises(ValueError, match="unknown strategy 'grid'"):
        sd.tune(c, s, strategy="grid")
    with pytest.raises(ValueError, match="trials must be an int >= 1"):
        sd.tune(c, s, trials=0)
    with pytest.raises(R.RecordsError, match="is a directory"):
        sd.tune(c, s, records=str(tmp_path))
    with pytest.raises(sd.ScheduleError, match="no knobs"):
        sd.tune(c, sd.Schedule(c))


def test_cli_run_best_merge_plot(tmp_path, capsys):
    rec, png = tmp_path / "cli.jsonl", tmp_path / "curve.png"
    spec = os.path.join(HERE, "tune_spaces.py") + ":matmul_space"
    assert tune_cli(["run", spec, "--arg", "m=16", "--arg", "n=16", "--arg", "k=8", "--trials", "6", "--batch", "3",
                     "--records", str(rec), "--plot", str(png), "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["trials"] == 6 and out["best_ms"] > 0 and out["workload"].startswith("matmul|A=16x8,B=8x16|opencl|")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tune_cli(["best", str(rec)]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["config"] == out["best_config"] and best["cost_ms"] == out["best_ms"]
    merged = tmp_path / "m.jsonl"
    assert tune_cli(["merge", str(merged), str(rec), str(rec)]) == 0
    assert len(R.load(str(merged))) == 6
    assert "m.jsonl: 6 record(s), one per workload and config (6 new)" in capsys.readouterr().err
    assert tune_cli(["merge", str(merged), str(merged), str(rec)]) == 0  # again, and into itself: no change
    assert len(R.load(str(merged))) == 6 and "(0 new)" in capsys.readouterr().err
    assert {r.strategy for r in R.load(str(rec))} == {"xgb"}
    assert tune_cli(["plot", str(rec), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {tmp_path / 'p.png'}: best time so far against 6 trial(s) of matmul|") \
        and "(XGBoost-guided search; best " in said
    # bad input: one line on stderr, exit code 1
    (tmp_path / "empty.jsonl").write_text("")
    for argv, msg in [
        (["best", str(tmp_path / "empty.jsonl")], "holds no records"),
        (["best", str(tmp_path)], "is a directory"),
        (["best", str(rec), "--workload", "conv2d"], "no workload matches 'conv2d'"),
        (["run", "nofile.py:f"], "no such file: nofile.py"),
        (["run", spec + "x"], "has no function 'matmul_spacex'"),
        (["run", spec, "--arg", "m"], "--arg 'm' is not name=value"),
        (["merge", str(tmp_path), str(rec)], "is a directory"),
        (["run", spec, "--budget-s", "0"], "budget_s must be > 0 seconds"),
    ]:
        assert tune_cli(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("sched-tune: error: ") and msg in err and "Traceback" not in err, err


def test_model_search_skips_points_past_the_device_limits():
    space, cost, featurize = _grid_problem()
    ms = ModelSearch(space, random.Random(0), featurize, eps=0.0, legal=lambda f: f[0] < 4)
    pts = [(a, b, c) for a in range(8) for b in (0, 7) for c in (0, 3)]
    ms.observe(pts, featurize(pts), [cost(p) for p in pts])
    for _ in range(3):
        batch = ms.propose(8, set(pts))
        assert len(batch) == 8 and all(p[0] < 4 for p in batch)
        pts += batch


def test_transfer_groups_take_other_shapes_of_the_operator_on_the_target():
    from sched_dsl.tuner.tuner import transfer_groups
    wl = R.Workload("matmul", "A=32x16,B=16x32", "opencl", "dev")
    f = [1.0, 2.0]
    recs = [R.Record(wl.key, {"t": 1}, 1.0, features=f),  # this workload: not transfer
            R.Record("matmul|A=64x64,B=64x64|opencl|dev", {"t": 1}, 2.0, features=f),
            R.Record("matmul|A=64x64,B=64x64|opencl|dev", {"t": 2}, None, "timeout", features=f),
            R.Record("matmul|A=8x8,B=8x8|opencl|other", {"t": 1}, 3.0, features=f),
            R.Record("matmul|A=8x8,B=8x8|cuda|dev", {"t": 1}, 3.0, features=f),  # other target
            R.Record("conv2d(stride=1)|X=1|opencl|dev", {"t": 1}, 3.0, features=f),  # other operator
            R.Record("matmul|A=9x9,B=9x9|opencl|dev", {"t": 1}, None, "invalid")]  # no features
    groups = transfer_groups(recs, wl)
    assert sorted((len(rows), tuple(costs)) for rows, costs in groups) == [(1, (3.0,)), (2, (2.0, None))]
    assert transfer_groups(recs, wl, n_features=3) == []  # vectors of another length are left out


def test_a_hook_that_does_not_load_is_a_clear_error():
    c, s = matmul_space()
    from sched_dsl.runtime.common import DeviceError
    with pytest.raises(DeviceError, match="the hook 'no_such_module:f' cannot be loaded: ModuleNotFoundError"):
        sd.tune(c, s, trials=1, hook="no_such_module:f", workers=1)


# the README's tuning snippet, smaller: a plain script with no `if __name__ == "__main__":` guard
PLAIN_SCRIPT = """\
import sched_dsl as sd
A, B = sd.placeholder("A", (16, 16)), sd.placeholder("B", (16, 16))
C = sd.matmul(A, B, name="C")
s = sd.Schedule(C)
i, j, k = s.loops("i", "j", "k")
ti = s.split_knob("ti", 16, "pow2", lo=4, hi=8)
tj = s.split_knob("tj", 16, "divisors", hi=8)
io, ii = s.split(i, ti); jo, ji = s.split(j, tj)
s.reorder(io, jo, ii, ji, k)
s.bind(io, "block.y"); s.bind(jo, "block.x"); s.bind(ii, "thread.y"); s.bind(ji, "thread.x")

result = sd.tune(C, s, target="opencl", trials=2, records="mm.jsonl", workers=1, repeat=1)
print("tuned", result.trials, result.best_config, result.errors)
kern = sd.build(C, s, target="opencl", records="mm.jsonl")
import numpy as np
a = np.ones((16, 16), np.float32)
print("built", float(kern(a, a)[0, 0]))
"""


def test_tune_from_a_plain_script(tmp_path):
    (tmp_path / "t.py").write_text(PLAIN_SCRIPT)
    proc = subprocess.run([sys.executable, "t.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("tuned 2 ") == 1 and "Counter()" in proc.stdout  # the script ran once, no errors
    assert "built 16.0" in proc.stdout and len(R.load(str(tmp_path / "mm.jsonl"))) == 2


def test_a_worker_that_dies_at_start_says_why(tmp_path, monkeypatch):
    (tmp_path / "dies_at_start.py").write_text(
        "import os, sys\nsys.stderr.write('cannot open the frobnicator\\n'); sys.stderr.flush(); os._exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    c, s = matmul_space()
    from sched_dsl.runtime.common import DeviceError
    with pytest.raises(DeviceError, match="(?s)measuring process died at start \\(exit code 3\\).*cannot open the frobnicator"):
        sd.tune(c, s, trials=1, hook="dies_at_start:f", workers=1)


def test_a_build_worker_that_dies_is_a_result_and_replaced(tmp_path, monkeypatch):
    (tmp_path / "build_crash.py").write_text(
        "import os, sys\n"
        "def hook(event, config, value):\n"
        "    if event == 'build' and config['ti'] == 2:\n"
        "        sys.stderr.write('lowering fell over\\n'); sys.stderr.flush(); os._exit(9)\n"
        "    return value\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from sched_dsl.tuner.measure import Measurer
    c, s = matmul_space()
    with Measurer(c, s, hook="build_crash:hook", workers=1) as m:
        crashed, fine = m.build([{"ti": 2, "tj": 4}, {"ti": 4, "tj": 4}])
    assert crashed.error == "compile_error"
    assert "died while building (exit code 9)" in crashed.message and "lowering fell over" in crashed.message
    assert fine.error is None and fine.source


# -- replaying recorded measurements -----------------------------------------------------------

def _replay_records(tmp_path):
    """Records of matmul_space on a made-up device: every config but two, with a made-up cost
    that is lowest at ti=8, tj=4, and one recorded compile error."""
    from sched_dsl.tuner.replay import ReplayMeasurer  # noqa: F401 - imported where it is used
    c, s = matmul_space()
    space = Space.of(s)
    wl = R.workload_of([c], "cuda", "Made-up GPU").key
    recs, skipped = [], []
    for k, p in enumerate(space.all_points()):
        cfg = space.config(p)
        if k in (3, 11):
            skipped.append(cfg)
            continue
        cost = 1.0 + abs(np.log2(cfg["ti"]) - 3) + abs(np.log2(cfg["tj"]) - 2)
        error = "compile_error" if k == 5 else None
        recs.append(R.Record(wl, cfg, None if error else cost, error, "made-up",
                             loop_only_features([c], s, cfg)))
    path = str(tmp_path / "replay.jsonl")
    R.RecordsWriter(path).append(recs)
    return c, s, wl, path, recs, skipped


@pytest.mark.parametrize("strategy", ["random", "xgb"])
def test_replay_measurer_answers_from_records(tmp_path, strategy):
    from sched_dsl.tuner.replay import NOT_RECORDED, ReplayMeasurer
    c, s, wl, path, recs, skipped = _replay_records(tmp_path)
    m = ReplayMeasurer(path, wl)
    res = sd.tune(c, s, "cuda", trials=100, strategy=strategy, batch=2, measurer=m)
    assert res.workload == wl
    assert res.trials == len(recs)  # every recorded config, each once; unrecorded ones are no trials
    assert res.best_ms == 1.0 and res.best_config == {"ti": 8, "tj": 4}
    assert res.errors["compile_error"] == 1 and res.errors["invalid"] == len(skipped)
    assert {r.message for r in res.records if r.error == "invalid"} == {NOT_RECORDED}
    assert m.features(skipped) == [None, None]


def test_tune_stops_starting_batches_after_budget_s(tmp_path):
    from sched_dsl.tuner.replay import ReplayMeasurer

    class SlowReplay(ReplayMeasurer):
        def build(self, configs):
            time.sleep(0.3)
            return super().build(configs)

    c, s, wl, path, recs, _ = _replay_records(tmp_path)
    out = str(tmp_path / "budget.jsonl")
    res = sd.tune(c, s, "cuda", trials=100, strategy="random", batch=2, measurer=SlowReplay(path, wl),
                  records=out, budget_s=0.2)
    assert res.out_of_time and res.trials + res.invalid == 2  # the first batch, then no other
    assert len(R.load(out)) == 2  # what was measured is kept
    again = sd.tune(c, s, "cuda", trials=4, strategy="random", batch=2, measurer=ReplayMeasurer(path, wl),
                    records=out, budget_s=60)
    assert again.resumed == 2 and not again.out_of_time and again.trials == 4
    with pytest.raises(ValueError, match="budget_s must be > 0 seconds, got 0"):
        sd.tune(c, s, "cuda", trials=4, measurer=ReplayMeasurer(path, wl), budget_s=0)


def test_transfer_records_that_match_nothing_are_a_warning(tmp_path):
    from sched_dsl.tuner.replay import ReplayMeasurer
    c, s, wl, path, _, _ = _replay_records(tmp_path)
    other = str(tmp_path / "other_target.jsonl")  # another shape, but recorded for OpenCL
    R.RecordsWriter(other).append([R.Record("matmul|A=2x2,B=2x2|opencl|dev", {"ti": 1, "tj": 1}, 1.0,
                                            features=[0.0])])
    with pytest.warns(UserWarning, match="transfer: no usable records of another shape of 'matmul' on target 'cuda'"):
        sd.tune(c, s, "cuda", trials=2, batch=2, measurer=ReplayMeasurer(path, wl), transfer=[other])
    # another shape on the target, but features of another length: left out, not a crash in the model
    short = str(tmp_path / "short_features.jsonl")
    R.RecordsWriter(short).append([R.Record("matmul|A=4x4,B=4x4|cuda|dev", {"ti": k, "tj": 1}, float(k),
                                            features=[0.0, 1.0]) for k in (1, 2)])
    with pytest.warns(UserWarning, match="2 record.s. of other shapes of 'matmul' have features of another length"):
        res = sd.tune(c, s, "cuda", trials=2, batch=2, measurer=ReplayMeasurer(path, wl), transfer=[short])
    assert res.trials == 2


def test_replay_measurer_without_the_workload_is_a_clear_error(tmp_path):
    from sched_dsl.tuner.replay import ReplayMeasurer
    _, _, wl, path, _, _ = _replay_records(tmp_path)
    with pytest.raises(R.RecordsError, match="no records of workload 'matmul|A=1x1"):
        ReplayMeasurer(path, "matmul|A=1x1,B=1x1|cuda|Made-up GPU")


def test_tune_eval_replays_h200_records_with_transfer(tmp_path):
    """benchmarks/tune_eval.py --replay on the committed H200 measurements of whole spaces
    (gzipped records): random, xgb and xgb-transfer (seeded by a --pretune source shape), 95%
    of the best config of the space, and random search's exact median."""
    data = os.path.join(HERE, "..", "benchmarks", "data", "h200_space")
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "..", "benchmarks", "tune_eval.py"),
                           "--replay", data, "--workloads", "conv256x14", "--pretune", "conv512x7",
                           "--pretune-trials", "8", "--transfer", "--seeds", "2", "--trials", "6",
                           "--quiet", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["workloads"]["conv256x14"]
    recs = R.load(os.path.join(data, "conv256x14.jsonl.gz"))
    best = min(r.cost_ms for r in recs if r.ok)
    assert row["best_overall_ms"] == best and row["space_complete"] and row["space_measured"] == row["space_size"]
    counted = [r for r in recs if r.error != "invalid"]
    good = [r for r in counted if r.ok and r.cost_ms <= best / 0.95]
    assert row["good_configs"] == len(good) >= 1
    # the exact median: P(no good config in t uniform picks without replacement) first <= 1/2
    t = row["random_expected_median_reach95"]
    p_miss = lambda t: math.comb(len(counted) - len(good), t) / math.comb(len(counted), t)  # noqa: E731
    assert p_miss(t) <= 0.5 < p_miss(t - 1)
    assert set(row["methods"]) == {"xgb", "random", "xgb-transfer"}
    for m in row["methods"].values():
        assert len(m["reach95"]) == 2 and all(len(c) == 6 for c in m["curves"])
    bad = subprocess.run([sys.executable, os.path.join(HERE, "..", "benchmarks", "tune_eval.py"),
                          "--replay", str(tmp_path), "--workloads", "conv256x14"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no records file" in bad.stderr


def test_tune_resumes_from_records_of_an_older_feature_set(tmp_path):
    """Records whose features have another length (measured before the feature set grew)
    count as measured, and the model learns from the rest: resuming mixes both without error."""
    c, s = matmul_space()
    path = tmp_path / "old.jsonl"
    first = sd.tune(c, s, trials=4, records=str(path), batch=2, strategy="random", seed=0, workers=1, repeat=1,
                    warmup=0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in lines[:2]:
        rec["features"] = rec["features"][:-4]
    path.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    res = sd.tune(c, s, trials=8, records=str(path), batch=2, strategy="xgb", seed=0, workers=1, repeat=1, warmup=0)
    assert res.resumed == first.trials == 4 and res.trials == 8
    configs = [json.dumps(r.config, sort_keys=True) for r in res.records]
    assert len(configs) == len(set(configs))  # nothing measured twice


def test_a_measurer_retargeted_to_another_workload_keeps_its_processes(tmp_path):
    """Measurer.retarget: the next workload is built and checked (against its own reference)
    in the processes already started, as tune_model does from one workload to the next."""
    from sched_dsl.tuner.measure import Measurer
    from tune_spaces import threads_space

    c, s = matmul_space()
    t, ts = threads_space()
    with Measurer(c, s, workers=1) as m:
        (_, first), = m.measure([{"ti": 4, "tj": 4}])
        pids = (m._proc.proc.pid, [p.proc.pid for p in m._pool.procs])
        m.retarget(t, ts)
        measured = m.measure([{"t": 4}, {"t": 8}])
        assert (m._proc.proc.pid, [p.proc.pid for p in m._pool.procs]) == pids
    assert first.error is None and all(r.error is None and r.cost_ms > 0 for _, r in measured), measured
    assert [b.config for b, _ in measured] == [{"t": 4}, {"t": 8}]
