"""Data-parallel training through each framework's own engine, switched by train.distribute.

JAX: keras.distribution.DataParallel over every device. TensorFlow: tf.distribute.MirroredStrategy
over every GPU, or every (logical) CPU when there is no GPU. `PIPELINE_CPU_DEVICES=N` splits the
CPU into N logical devices, which is how the tests exercise both engines without a GPU.
"""

import contextlib
import os


def split_cpu_before_import() -> None:
    """For JAX the split must happen before jax is imported (an XLA flag)."""
    n = os.environ.get("PIPELINE_CPU_DEVICES")
    if n and os.environ.get("KERAS_BACKEND") == "jax":
        flag = f"--xla_force_host_platform_device_count={int(n)}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def _tf_devices():
    import tensorflow as tf

    n = os.environ.get("PIPELINE_CPU_DEVICES")
    cpus = tf.config.list_physical_devices("CPU")
    if n and not tf.config.list_physical_devices("GPU"):
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(n))
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def wanted(setting: str) -> bool:
    """train.distribute: "on", "off", or "auto" (on where there are two GPUs or more)."""
    from pipeline.modeling.backend import gpu_count

    return setting == "on" or (setting == "auto" and gpu_count() >= 2)


def scope(enabled: bool):
    """(context to build and compile the model in, number of replicas)."""
    import keras

    if not enabled:
        return contextlib.nullcontext(), 1
    if keras.backend.backend() == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return contextlib.nullcontext(), len(devices)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=_tf_devices())
        return strategy.scope(), strategy.num_replicas_in_sync
    raise NotImplementedError(f"train.distribute is not wired for the {keras.backend.backend()} backend")
