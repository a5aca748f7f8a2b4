"""Runtimes that run lowered kernels: pyopencl (any OpenCL device) and numpy (reference)."""
