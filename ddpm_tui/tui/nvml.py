"""NVML readings (optional dependency `gpu`: nvidia-ml-py, module `pynvml`), apart from the
machine view's widgets."""

from __future__ import annotations

NO_GPU = "No NVIDIA GPU found (NVML unavailable): training runs on the CPU"


def _nvml():
    """The pynvml module, initialised; raises ImportError or pynvml.NVMLError when unavailable."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def nvml_problem() -> str | None:
    """Why NVML cannot be used here (None when it can and sees at least one GPU)."""
    try:
        nv = _nvml()
    except ImportError:
        return "nvidia-ml-py is not installed (pip install 'ddpm-tui[gpu]')"
    except Exception as exc:  # pynvml.NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return f"NVML did not start: {exc}"
    try:
        count = nv.nvmlDeviceGetCount()
    except Exception as exc:
        return f"NVML could not count GPUs: {exc}"
    finally:
        try:
            nv.nvmlShutdown()
        except Exception:
            pass
    return None if count > 0 else "NVML sees no GPU"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus(nv) -> list[dict]:
    """One reading of every GPU from an initialised pynvml: utilisation (%), memory (MiB),
    temperature (C), power (W) and the pids of compute processes. Fields a GPU does not report
    are None."""
    out = []
    for index in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        gpu = {"index": index, "name": _text(nv.nvmlDeviceGetName(handle)), "util": None, "mem_util": None,
               "mem_used": None, "mem_total": None, "temp": None, "power": None, "power_limit": None, "pids": []}
        try:
            rates = nv.nvmlDeviceGetUtilizationRates(handle)
            gpu["util"], gpu["mem_util"] = rates.gpu, rates.memory
        except Exception:
            pass
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            gpu["mem_used"], gpu["mem_total"] = mem.used / 2**20, mem.total / 2**20
        except Exception:
            pass
        try:
            gpu["temp"] = nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)
        except Exception:
            pass
        try:
            gpu["power"] = nv.nvmlDeviceGetPowerUsage(handle) / 1000
            gpu["power_limit"] = nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
        except Exception:
            pass
        try:
            gpu["pids"] = [p.pid for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)]
        except Exception:
            pass
        out.append(gpu)
    return out
