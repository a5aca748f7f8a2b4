"""Small knob spaces for the tuner's tests (importable by spawned processes)."""

import sched_dsl as sd


def matmul_space(m=32, n=32, k=16):
    """Block and thread tiles of a small matmul: 4 x 4 = 16 configs."""
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    ti = s.split_knob("ti", m, "pow2", lo=2, hi=16)
    tj = s.split_knob("tj", n, "pow2", lo=2, hi=16)
    io, ii = s.split(i, ti)
    jo, ji = s.split(j, tj)
    s.reorder(io, jo, ii, ji, kk)
    s.bind(io, "block.y")
    s.bind(jo, "block.x")
    s.bind(ii, "thread.y")
    s.bind(ji, "thread.x")
    return c, s


def fault_space():
    """One knob "t" = threads per block; tune_faults.FAULTS maps its values to faults, and
    8192 threads exceed the device's limit (invalid)."""
    a, b = sd.placeholder("A", (2, 4)), sd.placeholder("B", (4, 8192))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    t = s.knob("t", [2, 4, 8, 16, 32, 64, 128, 256, 8192])
    jo, ji = s.split(j, t)
    s.reorder(jo, ji, i, k)
    s.bind(jo, "block.x")
    s.bind(ji, "thread.x")
    return c, s


def threads_space():
    """One knob "t" = threads per block of a small matmul: 4 configs."""
    a, b = sd.placeholder("A", (4, 8)), sd.placeholder("B", (8, 64))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, k = s.loops("i", "j", "k")
    t = s.knob("t", [2, 4, 8, 16])
    jo, ji = s.split(j, t)
    s.reorder(jo, ji, i, k)
    s.bind(jo, "block.x")
    s.bind(ji, "thread.x")
    return c, s
