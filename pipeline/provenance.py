"""Where an artifact came from: data hash, package versions, git commit, and the run that made it
(its make command, machine and times), from which docs/results.md is written."""

import os
import platform
import re
import subprocess
import time
from functools import cache
from importlib import metadata

from pipeline import config
from pipeline.files import read_json

PACKAGES = ("keras", "tensorflow", "jax", "numpy", "pandas", "scikit-learn", "kaggle")


def data_sha256() -> str:
    """The hash of the train.csv the data stage validated (from data/raw/source.json)."""
    return read_json(config.RAW_DIR / "source.json")["sha256"]["train.csv"]


@cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(config.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(config.ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


@cache
def proc_cpuinfo() -> tuple[str, list[str]]:
    """(the first CPU's model name, its flags) from Linux's /proc/cpuinfo; (platform's name, []) elsewhere."""
    found = linux_cpuinfo()
    return found.get("model name") or platform.processor() or platform.machine(), found.get("flags", "").split()


@cache
def linux_cpuinfo() -> dict[str, str]:
    """The first CPU's entries in Linux's /proc/cpuinfo ("model name", "flags", "cpu MHz", ...); {} elsewhere."""
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block ends
                name, _, value = line.partition(":")
                found[name.strip()] = value.strip()
    except OSError:
        pass
    return found


def cpu_model() -> str:
    """'AMD EPYC (AVX-512 with native bf16)': the brand alone names no generation (a Zen 3 and a Zen 5 are
    both 'AMD EPYC' here), so the vector instructions that decide the speed come with it, and the caps a
    run put on them ('AMD EPYC (AVX-512 with native bf16; held to oneDNN AVX2, XLA AVX2)')."""
    brand, flags = proc_cpuinfo()
    caps = isa_caps()
    details = "; ".join(([vector_isa(flags)] if flags else []) + ([f"held to {caps}"] if caps else []))
    return f"{brand} ({details})" if details else brand


def isa_caps() -> str:
    """The instruction sets this process's frameworks are held to, '' for none: 'oneDNN AVX2, XLA AVX2'
    (ONEDNN_MAX_CPU_ISA, XLA_FLAGS=--xla_cpu_max_isa=...). They change the speed of the same CPU (the way to
    try an AVX2-only CPU's kernels on an AVX-512 one), so a time taken under them says so."""
    caps = []
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        caps.append(f"oneDNN {os.environ['ONEDNN_MAX_CPU_ISA']}")
    xla = re.search(r"--xla_cpu_max_isa=(\S+)", os.environ.get("XLA_FLAGS", ""))
    if xla:
        caps.append(f"XLA {xla[1]}")
    return ", ".join(caps)


def vector_isa(flags) -> str:
    """What a CPU's flags say of its speed: 'AVX2, no native bf16', 'AVX-512 with native bf16', ..."""
    flags = set(flags)
    if "amx_bf16" in flags:
        return "AMX and AVX-512 with native bf16"
    if "avx512_bf16" in flags:
        return "AVX-512 with native bf16"
    if "avx512f" in flags:
        return "AVX-512, no native bf16"
    return "AVX2, no native bf16" if "avx2" in flags else "no AVX2"


def run() -> dict:
    """The run: the command that made it (the stage runner records the make command), when the
    stage started and finished (UTC), and the machine."""
    started = os.environ.get("PIPELINE_STAGE_STARTED")
    return {
        "command": os.environ.get("PIPELINE_COMMAND"),
        "id": os.environ.get("PIPELINE_RUN_ID"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(started))) if started else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
    }


def collect() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": git_commit(),
        "machine": platform.machine(),
        "run": run(),
    }
