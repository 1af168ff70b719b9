"""Choosing the Keras backend before Keras is imported.

Each model names the backend it trains fastest on (params.toml, measured in README "Speed"):
on a 2-core CPU JAX runs the seed model ~2x faster than TensorFlow, while TensorFlow's
oneDNN convolutions run the CNN ~3x faster than XLA's. KERAS_BACKEND, when set,
wins; a preferred backend that is not installed falls back to one that is.
"""

import importlib.util
import os


def init(seed: int | None = None, preferred: str = "jax") -> str:
    """Pick the backend, quiet TensorFlow's C++ logging, seed every RNG; returns the backend."""
    if "KERAS_BACKEND" not in os.environ:
        installed = [b for b in (preferred, "jax", "tensorflow") if importlib.util.find_spec(b)]
        os.environ["KERAS_BACKEND"] = installed[0] if installed else preferred
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline.modeling import distribute

    distribute.split_cpu_before_import()
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
        if keras.backend.backend() == "tensorflow":
            # Deterministic kernels: same seed, same machine => same weights (CPU; see README).
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
    return keras.backend.backend()
