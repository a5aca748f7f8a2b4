"""Every test process sees two OpenCL CPU devices (PoCL), set before anything reads the
platform: the multi-device tests pin one worker or one part of a model to each."""

import os

os.environ.setdefault("POCL_DEVICES", "pthread pthread")
