import numpy as np
import sched_dsl as sd

A = sd.placeholder("A", (256, 128), "f32")
B = sd.placeholder("B", (128, 192), "f32")
C = sd.matmul(A, B)                      # loops "i", "j", "k"

s = sd.Schedule(C)
i, j, k = s.loops("i", "j", "k")
io, ii = s.split(i, 16)
jo, ji = s.split(j, 16)
ko, ki = s.split(k, 8)
s.reorder(io, jo, ko, ii, ji, ki)
s.bind(io, "block.y"); s.bind(jo, "block.x")
s.bind(ii, "thread.y"); s.bind(ji, "thread.x")
s.cache_read(A, "shared", at=ko)
s.cache_read(B, "shared", at=ko)
s.unroll(ki)

kern = sd.build(C, s, target="opencl")
print(kern.source)                       # OpenCL C text
a = np.random.rand(256, 128).astype(np.float32)
b = np.random.rand(128, 192).astype(np.float32)
np.testing.assert_allclose(kern(a, b), a @ b, rtol=1e-4)
print(s.ir())                            # tensorop + sched IR as text, parseable by sched-opt
