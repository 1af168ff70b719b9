"""Choosing the Keras backend before Keras is imported.

Each model names the backend it trains fastest on (params.toml, measured in docs/speed.md):
on a 2-core CPU JAX runs the seed model ~2x faster than TensorFlow, while TensorFlow's
oneDNN convolutions run the CNN ~3x faster than XLA's; `backend_gpu` is its choice where there
is a GPU. KERAS_BACKEND, when set, wins; a preferred backend that is not installed falls back to
one that is.
"""

import contextlib
import importlib.util
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for a while: TensorFlow's C++ start-up lines
    ("Could not find cuda drivers", "failed call to cuInit ... (303)", oneDNN and CPU-feature
    notes) are written there before any logging setting is read, so no variable silences them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Keras imports these at its own import wherever they are installed, for its scikit-learn wrappers and its
# image-gallery plots, both guarded by `except ImportError`; TensorFlow's import imports Keras. The pipeline uses
# neither through Keras, and they cost 1.4-1.7 s of CPU in every process that trains or predicts (on the Zen 5,
# a fresh process's `backend.init`: JAX 3.1 -> 1.7 s of CPU, TensorFlow 5.4 -> 3.7 s).
KERAS_EXTRAS = ("sklearn", "matplotlib")


@contextlib.contextmanager
def keras_extras_declined():
    """Import Keras (or TensorFlow, which imports it) inside this to decline its optional scikit-learn and
    matplotlib imports. A None in sys.modules is Python's way to make an import raise ImportError, and Keras's
    guards take that as "not installed". They are removed on leaving, so the pipeline's own imports of both
    (statistics, the report) load them as usual. A package already loaded is left alone: it costs no more."""
    declined = [name for name in KERAS_EXTRAS if name not in sys.modules]
    sys.modules.update(dict.fromkeys(declined))
    try:
        yield
    finally:
        for name in declined:
            sys.modules.pop(name, None)


def _load_tensorflow_quietly() -> None:
    """Under TensorFlow, import it here, with its device probe, so a run prints only the pipeline's own
    lines (a failed import still raises its Python error). Under another backend, never: Keras would
    import it whenever it is installed, even under JAX (keras-team/keras#18455: `set_random_seed` and
    every model save ask its lazy module whether TensorFlow is available, which imports it), ~5.5 s of
    CPU per process here for nothing a JAX run uses. Telling that lazy module "not available" keeps
    TensorFlow out; where Keras no longer has it, nothing changes but the time."""
    if importlib.util.find_spec("tensorflow") is None:
        return
    if os.environ["KERAS_BACKEND"] != "tensorflow":
        from keras.src.utils import module_utils

        if (
            isinstance(getattr(module_utils, "tensorflow", None), module_utils.LazyModule)
            and "tensorflow" not in sys.modules
        ):
            module_utils.tensorflow._available = False
        return
    with quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()


def gpu_count() -> int:
    """NVIDIA GPUs the driver shows (no framework imported: the backend is chosen before Keras)."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def choose(p: dict) -> str:
    """A model's backend: `backend_gpu` where there is a GPU (cuDNN under either framework is a
    different race from this CPU's), else `backend`; "auto" takes the one measured fastest here
    (pipeline/speed/tune.py), without measuring (a training run measures before it calls this)."""
    if "auto" in (p["backend"], p.get("backend_gpu")):
        from pipeline.speed import tune

        p = tune.resolve(p, measure=False)
    return p.get("backend_gpu", p["backend"]) if gpu_count() else p["backend"]


def compilation_cache() -> None:
    """JAX's persistent compilation cache in the output root's state folder: the folds of a CV run,
    its assembly and a rerun compile the same steps for the same shapes and find them compiled (a
    seed-model fold's first epoch here: 12.0 s compiling, 5.6 s from the cache). Only with filelock:
    with a size limit JAX locks each entry, so folds trained side by side never read one half-written.
    A JAX_COMPILATION_CACHE_DIR of the user's wins. Not in a Kaggle notebook: its output root is the
    notebook's saved output, which `make kernel` downloads."""
    if (
        "JAX_COMPILATION_CACHE_DIR" in os.environ
        or importlib.util.find_spec("filelock") is None
        or os.environ.get("KAGGLE_KERNEL_RUN_TYPE")
    ):
        return
    from pipeline import config

    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(config.STATE_DIR / "xla-cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))  # a limit: what turns the locking on


def init(seed: int | None = None, preferred: str = "jax") -> str:
    """Pick the backend, quiet TensorFlow's start-up, seed every RNG; returns the backend."""
    if "KERAS_BACKEND" not in os.environ:
        installed = [b for b in (preferred, "jax", "tensorflow") if importlib.util.find_spec(b)]
        os.environ["KERAS_BACKEND"] = installed[0] if installed else preferred
    # 3 = fatal only. At 2, every epoch of a deterministic TensorFlow run logs an ERROR line
    # ("NodeDef mentions attribute use_unbounded_threadpool ... will be ignored") that is harmless;
    # real failures still raise in Python. Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from pipeline.modeling import distribute

    distribute.split_cpu_before_import()
    if os.environ["KERAS_BACKEND"] == "jax":
        compilation_cache()
    with keras_extras_declined():
        _load_tensorflow_quietly()
        import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
        if keras.backend.backend() == "tensorflow":
            # Deterministic kernels: same seed, same machine => same weights (CPU; see README).
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
    return keras.backend.backend()


def fit_data(x, y, batch_size: int) -> dict:
    """`model.fit`'s data for one pass over rows in their order: the arrays, except under TensorFlow. There
    Keras wraps arrays in a tf.data pipeline whose autotuning thread sleeps with a doubling period and is not
    woken when the pass ends: the iterator's destructor waits it out, with no CPU used, for up to as long
    again as the pass (the CNN's 15.4 s epochs took 20.7 s, and 27 s ones 41.2 s held to AVX2, in about half
    of its epochs; docs/speed.md). So under TensorFlow the same batches come from _batches instead."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return {"x": _batches(x, y, batch_size)}
    return {"x": x, "y": y, "batch_size": batch_size}


def validation_data(x, y, batch_size: int):
    """`model.fit`'s validation_data for these rows, fed as fit_data feeds the training rows."""
    import keras

    return _batches(x, y, batch_size) if keras.backend.backend() == "tensorflow" else (x, y)


def _batches(x, y, batch_size: int):
    """The rows in order, in batches of `batch_size` (the last one the remainder), as a tf.data pipeline with
    autotuning off that prefetches one batch."""
    import tensorflow as tf

    whole = len(x) // batch_size * batch_size  # whole batches as slices of one array, then the remainder
    data = tf.data.Dataset.from_tensor_slices(
        (x[:whole].reshape(-1, batch_size, *x.shape[1:]), y[:whole].reshape(-1, batch_size, *y.shape[1:]))
    )
    if whole < len(x):
        data = data.concatenate(tf.data.Dataset.from_tensors((x[whole:], y[whole:])))
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(1).with_options(options)


def devices() -> str:
    """What Keras will compute on, in words: 'cpu' or e.g. '2 x gpu (Tesla T4)'."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        found = jax.devices()
        kinds = sorted({getattr(d, "device_kind", d.platform) for d in found})
        return f"{len(found)} x {found[0].platform} ({', '.join(kinds)})"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return f"{len(gpus)} x gpu" if gpus else "cpu"
    if backend == "torch":
        import torch

        return (
            f"{torch.cuda.device_count()} x gpu ({torch.cuda.get_device_name(0)})"
            if torch.cuda.is_available()
            else "cpu"
        )
    return backend
