"""Runtimes that run lowered kernels: pyopencl (any OpenCL device), CUDA (pycuda with NVRTC)
and numpy (reference)."""


def device_name(target: str) -> str:
    """The name the records give the target's default device (part of the workload key)."""
    if target == "opencl":
        from sched_dsl.runtime.opencl import default_device
        d = default_device()
        return f"{d.platform.name.strip()}: {d.name.strip()}"
    from sched_dsl.runtime.cuda import default_device
    return default_device().name()


def tensor_cores(target: str) -> bool:
    """Whether kernels for the target's default device take the tensor-core instructions
    (mma.sync, ldmatrix, cp.async): CUDA GPUs of compute capability 8.0 and later, and NVIDIA's
    OpenCL on them. `SCHED_DSL_TENSOR_CORES=0` turns them off (plain loops; to compare)."""
    import os

    if target == "opencl":
        from sched_dsl.runtime.opencl import has_tensor_cores
        return has_tensor_cores()  # it reads SCHED_DSL_TENSOR_CORES too
    if os.environ.get("SCHED_DSL_TENSOR_CORES") == "0":
        return False
    from sched_dsl.runtime.cuda import default_device
    return default_device().compute_capability()[0] >= 8


def device_count(target: str) -> int:
    """How many devices of the target this machine has (OpenCL: every platform's)."""
    if target == "opencl":
        from sched_dsl.runtime.opencl import devices
        return len(devices())
    from sched_dsl.runtime.cuda import _driver
    drv = _driver()
    drv.init()
    return drv.Device.count()
