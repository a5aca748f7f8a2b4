"""How CudaKernel.bench times a plan, with the CUDA driver replaced by a clock of its own (the
same code runs on a GPU in tests/test_tune_gpu.py): runs are replayed from one CUDA graph of
enough runs to last about GRAPH_US, captured once, and the timed replays queue behind an
untimed one, so that no launch gap is timed."""

from __future__ import annotations

import contextlib

import pytest

from sched_dsl.runtime import cuda


class FakeGPU:
    """A stream that runs what is queued on it in order; kernel k takes `us[k]` microseconds,
    and the host needs `gap_us` to issue a launch, during which an idle GPU waits."""

    def __init__(self, us: list[float], gap_us: float = 10.0):
        self.us, self.gap_us = us, gap_us
        self.host = self.gpu = 0.0  # when the host is done issuing; when the GPU is done
        self.graphs: list[list[int]] = []
        self.replays = 0

    def issue(self, kernels: list[int]) -> None:
        self.host += self.gap_us
        self.gpu = max(self.gpu, self.host) + sum(self.us[k] for k in kernels)

    def event(self):
        gpu = self

        class Event:
            def record(self, stream=None):
                self.at = max(gpu.gpu, gpu.host)

            def time_till(self, other) -> float:
                return (other.at - self.at) / 1e3

            def synchronize(self):
                pass
        return Event()


@pytest.fixture
def kernel(monkeypatch):
    def make(us: list[float]) -> tuple[cuda.CudaKernel, FakeGPU]:
        gpu = FakeGPU(us)
        kern = object.__new__(cuda.CudaKernel)
        kern.calls = [None] * len(us)
        kern.lock = contextlib.nullcontext()
        kern._wait = lambda event: None
        kern._launch = lambda k, stream=None: recorded.append(k) if capturing else gpu.issue([k])
        kern._launch_all = lambda: [gpu.issue([k]) or us[k] / 1e3 + gpu.gap_us / 1e3 for k in range(len(us))]
        recorded: list[int] = []
        capturing = False

        class Graph:
            def __init__(self, stream, record):
                nonlocal capturing
                capturing = True
                recorded.clear()
                record()
                capturing = False
                self.kernels = list(recorded)
                gpu.graphs.append(self.kernels)

            def launch(self):
                gpu.replays += 1
                gpu.issue(self.kernels)

        driver = type("Driver", (), {"Event": staticmethod(gpu.event), "Stream": staticmethod(lambda: None)})
        monkeypatch.setattr(cuda, "_driver", lambda: driver)
        monkeypatch.setattr(cuda, "current_context", contextlib.nullcontext)
        monkeypatch.setattr(cuda, "has_cuda_graphs", lambda: True)
        monkeypatch.setattr(cuda, "CudaGraph", Graph)
        return kern, gpu
    return make


@pytest.mark.parametrize("us", [[2.0], [3.0, 1.0], [250.0], [40.0, 20.0, 5.0]])
def test_bench_times_the_kernels_not_their_launches(kernel, us):
    kern, gpu = kernel(us)
    ms = kern.bench(repeat=3, warmup=1)
    assert ms * 1e3 == pytest.approx(sum(us), rel=1e-9)  # a launch gap of 10 us would show on every one
    per_graph = len(gpu.graphs[0]) // len(us)
    assert per_graph == max(1, min(cuda.GRAPH_RUNS, -(-cuda.GRAPH_US // (sum(us) + 10 * len(us)))))
    assert gpu.graphs[0] == list(range(len(us))) * per_graph
    kern.bench(repeat=3, warmup=0)
    assert len(gpu.graphs) == 1  # captured once


def test_bench_times_at_least_repeat_runs(kernel):
    kern, gpu = kernel([100.0])  # two runs to a graph: 200 us
    kern.bench(repeat=5, warmup=0)
    assert len(gpu.graphs[0]) == 2 and gpu.replays == 1 + 3  # one untimed, then three of two runs: 6 >= 5
