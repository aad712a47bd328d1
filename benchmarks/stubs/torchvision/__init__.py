"""Benchmark-only stand-in for torchvision (not the real package).

denoising-diffusion-pytorch runs `from torchvision import transforms as T, utils` at import time,
but only its Trainer and Dataset use them; its Unet and GaussianDiffusion never do. The torchvision
wheels on PyPI cannot be imported beside the CPU torch wheel this project pins, so
benchmarks/bench_train_speed.py puts this folder first on sys.path. Touching anything here raises.
"""


class _Missing:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        raise ImportError(f"torchvision.{self._name}.{attr}: torchvision is a benchmark stub here")


transforms = _Missing("transforms")
utils = _Missing("utils")
