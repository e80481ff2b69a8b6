"""The context every benchmark figure carries: CPU, cores, BLAS (via threadpoolctl), library
versions, load, the command and the source revision."""

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_gib():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def blas():
    """What threadpoolctl sees in this process: one entry per BLAS / OpenMP library."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keys if info.get(k) is not None} for info in threadpool_info()]


def version(distribution):
    """The installed version of a distribution (read from its metadata: nothing is imported)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_revision():
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def context(argv, threads):
    """A dict describing the machine, the software and the command of this run."""
    import numpy as np

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "command": shlex.join(["python", "benchmarks/bench.py", *argv]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": memory_gib(),
        "load_average_start": load_average(),
        "threads": threads,
        "blas": blas(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "onnx": version("onnx"),
        "numba": version("numba"),
        "regnet": version("regnet"),
        "revision": git_revision(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def describe(ctx):
    """The context as a few lines of Markdown."""
    blas_text = ", ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture', '?')} kernel; "
        f"{b.get('num_threads')} threads by default, {ctx['threads']} in every measurement)"
        for b in ctx.get("blas") or []
    )
    paths = "; ".join(f"{fw}: {line}" for fw, line in (ctx.get("accel_paths") or {}).items())
    load = ctx.get("load_average_start")
    end = ctx.get("load_average_end")
    return "\n".join(
        [
            f"* command: `{ctx['command']}` ({ctx['time']}, revision {ctx.get('revision')})",
            f"* CPU: {ctx['cpu']}, {ctx['cores']} cores ({ctx['usable_cores']} usable), {ctx['memory_gib']} GiB",
            f"* threads: {ctx['threads']} for every framework; BLAS: {blas_text or 'unknown (no threadpoolctl)'}",
            f"* Python {ctx['python']}, NumPy {ctx['numpy']}, numba {ctx.get('numba')}, PyTorch {ctx.get('torch')}, "
            f"onnxruntime {ctx.get('onnxruntime')}, regnet {ctx.get('regnet')}",
            f"* regnet paths: {paths or 'one (no accelerator column)'}",
            f"* load average (1, 5, 15 min) at start {load}, at end {end}",
        ]
    )
