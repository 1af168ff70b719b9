"""`backend = "auto"`, `precision = "auto"`: the fastest (backend, precision) on the machine at hand, by
measurement, cached per machine outside the checkout.

Which combination trains fastest depends on the CPU more than on the model: on a Zen 5 (AVX512-BF16)
the CNN trained in bfloat16 at ~20 s an epoch against ~26 s in float32, while a Zen 3 (AVX2, no
bf16) emulates bfloat16 at ~13-16x the float32 time (issue 29). So no default fits every machine.
As cuDNN's benchmark mode and XLA's autotuner do for kernels, the first run of a model on a machine
times a few training steps of each candidate on the model's real shapes, each in a fresh process (a
process has one Keras backend), and keeps the fastest. CPU flags (py-cpuinfo) are only a hint: they
order the candidates and key the cache; the timing decides.

The cache (`~/.cache/digit-recognizer-pipeline/tune-<machine>.json`, or PIPELINE_TUNE_DIR) is keyed
by what decides speed: the CPU's model and flags, the cores this process may use, the GPUs and the
package versions. A setting in params.toml or PARAMS= other than "auto" is used as it is.
PIPELINE_TUNE=off resolves "auto" without measuring (jax where installed, float32): the tests use it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from functools import cache
from importlib import metadata
from pathlib import Path

from pipeline import config
from pipeline import params as params_mod
from pipeline.errors import PipelineError, cli

AUTO = "auto"
BACKENDS = ("tensorflow", "jax")  # the Keras backends the pipeline trains on
CPU_PRECISIONS = ("float32", "mixed_bfloat16")
GPU_PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The flags that decide the candidates' speed: vector width, native bfloat16, Intel's AMX tiles.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
PACKAGES = ("keras", "tensorflow", "jax", "jaxlib")
# A probe: one step to compile, one timed step, then enough steps for ~TIMED_SECONDS (at most MAX_STEPS).
TIMED_SECONDS = 2.0
MAX_STEPS = 40
PROBE_TIMEOUT = 120  # seconds: an emulated-bf16 CNN step on an AVX2 CPU takes ~5 s, its compile more
# Once one candidate is timed, another gets PROBE_STARTUP + PROBE_STEPS x the best step: a process start,
# a compile and a few steps at most, so a hopeless one costs a minute, not the two above.
PROBE_STARTUP, PROBE_STEPS = 45, 15
# Skip the steady-state timing of a candidate whose single step is this many times the best one's.
HOPELESS = 3.0


# --- the machine -------------------------------------------------------------------------------------


@cache
def cpu() -> dict:
    """The CPU: brand, the speed flags it has, its advertised clock (GHz, None where unknown). On Linux from
    /proc/cpuinfo, where py-cpuinfo reads them too (the clock from the brand's "@ 2.20GHz", else "cpu MHz"),
    without the child process it starts to read cpuid: ~1 s of CPU in every training process. Elsewhere
    py-cpuinfo."""
    from pipeline.provenance import linux_cpuinfo, proc_cpuinfo

    brand, flags = proc_cpuinfo()
    if flags:
        advertised = re.search(r"@\s*([\d.]+)\s*GHz", brand)
        mhz = linux_cpuinfo().get("cpu MHz")
        ghz = float(advertised[1]) if advertised else round(float(mhz) / 1e3, 3) if mhz else None
        return {"brand": brand, "flags": sorted(set(flags) & set(SPEED_FLAGS)), "ghz": ghz}
    try:
        import cpuinfo  # py-cpuinfo
    except ImportError:  # a notebook image without it: no flags, no clock
        return {"brand": brand, "flags": [], "ghz": None}
    info = cpuinfo.get_cpu_info()
    hz = info.get("hz_advertised") or info.get("hz_actual")
    return {
        "brand": info.get("brand_raw") or info.get("arch_string_raw") or "unknown CPU",
        "flags": sorted(f for f in info.get("flags", []) if f in SPEED_FLAGS),
        "ghz": round(hz[0] / 1e9, 3) if hz and hz[0] else None,
    }


def cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpus() -> list[str]:
    """NVIDIA GPUs by model, from the driver (no framework imported)."""
    found = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    found.append(line.split(":", 1)[1].strip())
    return found


def machine() -> dict:
    """What decides speed: CPU model and flags, usable cores, GPUs, package versions, and the instruction
    sets the frameworks are held to, where they are (so a capped calibration never answers for the CPU)."""
    from pipeline.provenance import isa_caps

    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    c = cpu()
    m = {"cpu": c["brand"], "flags": c["flags"], "cores": cores(), "gpus": gpus(), "packages": versions}
    caps = isa_caps()
    return m | {"isa_caps": caps} if caps else m


def describe(m: dict | None = None) -> str:
    """'AMD EPYC, 2 cores, AVX-512 with native bf16' (what a time was measured on)."""
    from pipeline.provenance import vector_isa

    m = m or machine()
    vector = vector_isa(m["flags"])
    gpu = f", {len(m['gpus'])} x {m['gpus'][0]}" if m["gpus"] else ""
    held = f", held to {m['isa_caps']}" if m.get("isa_caps") else ""
    return f"{m['cpu']}, {m['cores']} cores, {vector}{held}{gpu}"


def cache_file(m: dict | None = None) -> Path:
    m = m or machine()
    key = hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:12]
    root = os.environ.get("PIPELINE_TUNE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "digit-recognizer-pipeline"
    )
    return Path(root) / f"tune-{key}.json"


# --- the choice --------------------------------------------------------------------------------------


def shape_key(p: dict) -> str:
    """What fixes a training step's cost: the model, its architecture, batch size and augmentation."""
    shape = {k: p[k] for k in ("model", "batch_size", "augment", "elastic")} | params_mod.architecture(p)
    return json.dumps(shape, sort_keys=True)


def installed_backends() -> list[str]:
    """The backends a run may use: KERAS_BACKEND when set (it wins), else those installed."""
    if os.environ.get("KERAS_BACKEND"):
        return [os.environ["KERAS_BACKEND"]]
    return [b for b in BACKENDS if importlib.util.find_spec(b)]


def candidates(p: dict, backends: list[str], on_gpu: bool, flags: list[str]) -> list[tuple[str, str]]:
    """(backend, precision) pairs worth timing, the likeliest fastest first: an explicit setting
    narrows them; the flags only order them (bf16 first where the CPU has it natively)."""
    from pipeline.modeling.models import CPU_HINTS

    wanted_backend = p.get("backend_gpu", p["backend"]) if on_gpu else p["backend"]
    hint = CPU_HINTS.get(p["model"], "jax")
    chosen_backends = sorted(backends, key=lambda b: b != hint) if wanted_backend == AUTO else [wanted_backend]
    if p["precision"] != AUTO:
        precisions = [p["precision"]]
    elif on_gpu:
        precisions = list(GPU_PRECISIONS)
    else:
        native = bool({"avx512_bf16", "amx_bf16"} & set(flags))
        precisions = list(CPU_PRECISIONS if not native else reversed(CPU_PRECISIONS))
    return [(b, q) for q in precisions for b in chosen_backends]


def is_auto(p: dict, on_gpu: bool = False) -> bool:
    """Whether the settings that apply here leave anything to measure: `backend_gpu` only counts
    where there is a GPU, so a CPU run with backend and precision set measures nothing."""
    backend = p.get("backend_gpu", p["backend"]) if on_gpu else p["backend"]
    return AUTO in (backend, p["precision"])


def pick(timings: dict[str, float | None], allowed: list[tuple[str, str]]) -> tuple[str, str]:
    """The fastest allowed (backend, precision) of measured seconds per step ({"jax float32": 0.01});
    a candidate that failed (None) never wins."""
    measured = [(timings[f"{b} {q}"], (b, q)) for b, q in allowed if timings.get(f"{b} {q}") is not None]
    if not measured:
        raise PipelineError(
            f"no backend/precision could train here: every candidate failed ({', '.join(' '.join(c) for c in allowed)})"
        )
    return min(measured)[1]


def reason(choice: tuple[str, str], timings: dict[str, float | None], allowed, how: str, m: dict) -> str:
    """'float32, tensorflow: measured fastest on this machine (AMD EPYC, 2 cores, AVX2, no native bf16):
    2.1 s/100 steps against 18.7 s mixed_bfloat16 tensorflow, ...'"""
    backend, precision = choice

    def per100(key):
        return f"{100 * timings[key]:.1f} s"

    def other(b, q):
        key = f"{b} {q}"
        return f"{q} {b} (stopped: too slow, or failed)" if timings[key] is None else f"{per100(key)} {q} {b}"

    others = [other(b, q) for b, q in allowed if (b, q) != choice and f"{b} {q}" in timings]
    against = f" against {', '.join(others)}" if others else ""
    return (
        f"{precision}, {backend}: {how} on this machine ({describe(m)}): "
        f"{per100(f'{backend} {precision}')}/100 steps{against}"
    )


@contextlib.contextmanager
def _locked(path: Path):
    """One calibration at a time per machine: folds started side by side wait for the first one's
    timings (measured on an otherwise idle machine) instead of timing each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cached_timings(p: dict) -> dict[str, float | None]:
    """This machine's cached seconds per step of p's shape, by "backend precision" (empty if none)."""
    return _read(cache_file()).get(shape_key(p), {}).get("timings", {})


def _write(path: Path, data: dict) -> None:
    from pipeline.files import write_json

    write_json(path, data)


def resolve(p: dict, measure: bool = True, again: bool = False, say=print) -> dict:
    """p with a concrete backend and precision; prints where they came from. Measures the candidates
    that the cache lacks (all of them with `again`); with measure=False, uses the cache or the
    fallback (jax, float32) and measures nothing."""
    on_gpu = bool(gpus())
    if not is_auto(p, on_gpu):
        return p
    backends = installed_backends()
    if os.environ.get("PIPELINE_TUNE") == "off":
        choice = _unmeasured(candidates(p, backends, on_gpu, []))
        say(f"{p['model']}: {choice[1]}, {choice[0]}: not measured (PIPELINE_TUNE=off)")
        return _concrete(p, choice, on_gpu)
    m = machine()
    if not measure:  # the cache's choice, or the unmeasured one: for prediction, where speed matters less
        allowed = candidates(p, backends, on_gpu, m["flags"])
        timings = _read(cache_file(m)).get(shape_key(p), {}).get("timings", {})
        found = any(timings.get(f"{b} {q}") is not None for b, q in allowed)
        return _concrete(p, pick(timings, allowed) if found else _unmeasured(allowed), on_gpu)
    allowed = candidates(p, backends, on_gpu, m["flags"])
    path, key = cache_file(m), shape_key(p)
    with _locked(path):
        entry = _read(path).get(key, {}) if not again else {}
        timings = dict(entry.get("timings", {}))
        missing = [c for c in allowed if f"{c[0]} {c[1]}" not in timings]
        if missing:
            say(
                f"{p['model']}: timing {len(missing)} backend/precision candidate(s) on this machine "
                f"(once; cached in {path})"
            )
            timings |= measure_all(p, missing, known=timings)
            data = _read(path)
            data[key] = {
                "timings": timings,
                "machine": m,
                "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _write(path, data)
            how = "measured fastest"
        else:
            how = f"measured fastest ({entry.get('measured', '?')[:10]}, cached)"
    choice = pick(timings, allowed)
    say(f"{p['model']}: " + reason(choice, timings, allowed, how, m))
    return _concrete(p, choice, on_gpu)


def _concrete(p: dict, choice: tuple[str, str], on_gpu: bool) -> dict:
    backend, precision = choice
    out = {**p, "precision": precision}
    if on_gpu:
        out["backend_gpu"] = backend
        out["backend"] = backend if p["backend"] == AUTO else p["backend"]
    else:
        out["backend"] = backend
        if out.get("backend_gpu") == AUTO:
            out["backend_gpu"] = backend
    return out


def _unmeasured(allowed: list[tuple[str, str]]) -> tuple[str, str]:
    """The choice without a measurement: float32 (never emulated), on the model's hinted backend
    (`candidates` lists it first)."""
    return next((c for c in allowed if c[1] == "float32"), allowed[0])


# --- measuring ---------------------------------------------------------------------------------------


def measure_all(p: dict, todo: list[tuple[str, str]], known: dict | None = None) -> dict[str, float | None]:
    """Seconds per training step of each (backend, precision), each in a fresh process, one at a time;
    None for one that failed or was stopped as hopeless."""
    found: dict[str, float | None] = {}
    for backend, precision in todo:
        best = min([t for t in {**(known or {}), **found}.values() if t is not None], default=None)
        found[f"{backend} {precision}"] = probe(p, backend, precision, best)
    return found


def probe(p: dict, backend: str, precision: str, best: float | None = None) -> float | None:
    """One candidate's seconds per step, or None if it cannot train here or is far slower than `best`."""
    spec = {"params": {**p, "backend": backend, "precision": precision}, "best": best}
    env = os.environ | {"KERAS_BACKEND": backend}
    timeout = PROBE_TIMEOUT if best is None else min(PROBE_TIMEOUT, PROBE_STARTUP + PROBE_STEPS * best)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.speed.tune", "--probe", json.dumps(spec)],
            cwd=config.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None
    return json.loads(lines[-1])["seconds_per_step"]


def _probe_here(spec: dict) -> dict:
    """In the probe's own process: build and compile the model as training does, then time steps."""
    import numpy as np

    from pipeline.modeling import backend

    p = spec["params"]
    backend.init(0, p["backend"])
    import keras

    from pipeline.modeling.models import build_model
    from pipeline.modeling.trainer import compile_model

    keras.mixed_precision.set_global_policy(p["precision"])
    bs = p["batch_size"]
    model = build_model(p["model"], seed=0, **params_mod.build_options(p))
    compile_model(model, p, n_train=bs * 100)
    rng = np.random.default_rng(0)
    x = rng.random((bs * MAX_STEPS, config.IMAGE_SIDE, config.IMAGE_SIDE), dtype=np.float32)
    y = rng.integers(0, config.N_CLASSES, bs * MAX_STEPS)

    def timed(steps: int) -> float:
        start = time.perf_counter()
        # fed as training feeds: Keras's own feed under TensorFlow can stall a 2 s pass by as much again
        model.fit(**backend.fit_data(x[: bs * steps], y[: bs * steps], bs), epochs=1, shuffle=False, verbose=0)
        return (time.perf_counter() - start) / steps

    timed(1)  # compiles
    one = timed(1)
    if spec.get("best") and one > HOPELESS * spec["best"]:
        return {"seconds_per_step": one, "steps": 1}
    steps = min(MAX_STEPS, max(2, math.ceil(TIMED_SECONDS / one)))
    return {"seconds_per_step": timed(steps), "steps": steps}


# --- make tune ---------------------------------------------------------------------------------------


def table(models: list[str], overrides: list[str]) -> str:
    """The cached timings of each model's candidates, seconds per 100 steps, the chosen one marked."""
    from tabulate import tabulate

    params = params_mod.resolve(overrides)
    m = machine()
    data = _read(cache_file(m))
    rows = []
    for name in models:
        p = params_mod.for_model(params, name)
        allowed = candidates(p, installed_backends(), bool(m["gpus"]), m["flags"])
        entry = data.get(shape_key(p), {})
        timings = entry.get("timings", {})
        chosen = pick(timings, allowed) if any(timings.get(f"{b} {q}") for b, q in allowed) else None
        for b, q in allowed:
            t = timings.get(f"{b} {q}", "-")
            shown = "failed" if t is None else t if t == "-" else f"{100 * t:.2f}"
            rows.append([name, b, q, shown, "<- chosen" if (b, q) == chosen else "", entry.get("measured", "")[:16]])
    head = ["model", "backend", "precision", "s/100 steps", "", "measured"]
    return f"{describe(m)}; cache {cache_file(m)}\n\n" + tabulate(rows, head, tablefmt="github")


@cli
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", help="models to show (default: every model whose settings say auto)")
    ap.add_argument("--again", action="store_true", help="measure every candidate again")
    ap.add_argument("--probe", help=argparse.SUPPRESS)  # the child process of one measurement
    ap.add_argument("overrides", nargs="*", help="key=value, as PARAMS= takes them")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(_probe_here(json.loads(args.probe))), flush=True)
        return
    params = params_mod.resolve(args.overrides)
    from pipeline.modeling.models import MODELS

    on_gpu = bool(gpus())
    models = args.models or [n for n in MODELS if is_auto(params_mod.for_model(params, n), on_gpu)]
    if args.again:
        for name in models:
            resolve(params_mod.for_model(params, name), again=True)
    print(table(models, args.overrides))


if __name__ == "__main__":
    main()
