"""Choosing the Keras backend before Keras is imported.

Measured on the 2-core CI machine (README, "Speed"): JAX trains the seed model about 6x faster
per epoch than TensorFlow, so it is preferred when installed. KERAS_BACKEND, when set, wins.
"""

import importlib.util
import os


def init(seed: int | None = None) -> str:
    """Pick the backend, quiet TensorFlow's C++ logging, seed every RNG; returns the backend."""
    if "KERAS_BACKEND" not in os.environ:
        os.environ["KERAS_BACKEND"] = "jax" if importlib.util.find_spec("jax") else "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
        if keras.backend.backend() == "tensorflow":
            # Deterministic kernels: same seed, same machine => same weights (CPU; see README).
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
    return keras.backend.backend()
