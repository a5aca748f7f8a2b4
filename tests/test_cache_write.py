"""cache_write keeps one register per output the thread computes, also when the thread's
outputs are strided (the thread loop is the inner part of a split)."""

import re

import numpy as np
import pytest

import sched_dsl as sd


def strided_matmul(cache_write: bool, shared: bool, m=70, n=150, k=33):
    a, b = sd.placeholder("A", (m, k)), sd.placeholder("B", (k, n))
    c = sd.matmul(a, b, name="C")
    s = sd.Schedule(c)
    i, j, kk = s.loops("i", "j", "k")
    io, ir = s.split(i, 64)
    jo, jr = s.split(j, 64)
    ii, ty = s.split(ir, 16)
    ji, tx = s.split(jr, 16)
    s.reorder(io, jo, ty, tx, kk, ii, ji)
    s.bind(io, "block.y"); s.bind(jo, "block.x"); s.bind(ty, "thread.y"); s.bind(tx, "thread.x")
    if shared:
        s.cache_read(a, "shared", at=kk)
        s.cache_read(b, "shared", at=kk)
    if cache_write:
        s.cache_write("local", at=tx)
    return c, s


@pytest.mark.parametrize("shared", [False, True])
def test_strided_thread_outputs_accumulate_in_registers(shared):
    c, s = strided_matmul(True, shared)
    kern = sd.build(c, s)
    sizes = [int(n) for n in re.findall(r"^\s*float v_C_local\[(\d+)\]", kern.source, re.M)]
    assert sizes == [16]  # 4 x 4 outputs per thread, not their 49 x 49 bounding box
    rng = np.random.default_rng(1)
    a = rng.standard_normal((70, 33), dtype=np.float32)
    b = rng.standard_normal((33, 150), dtype=np.float32)
    np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-4, atol=1e-4)
