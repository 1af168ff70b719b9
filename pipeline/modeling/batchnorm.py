"""Batch normalization that runs as one kernel under TensorFlow.

Keras 3 normalizes a batch with generic ops (a mean, a squared difference, another mean, then
subtract, multiply, add, each a pass over the activations, with casts around them under mixed
precision). On this CPU, in the CNN's training step, those ops took ~37% of the time, as much as
the convolutions' backward pass (TensorFlow's profiler, docs/speed.md). Under TensorFlow this layer
calls the fused kernel (FusedBatchNormV3, oneDNN's on this CPU: two passes, bfloat16 in, float32
statistics); under any other backend it is keras.layers.BatchNormalization itself. Same variables,
same moving-average rule (the kernel's unbiased batch variance is rescaled to the biased one Keras
keeps), so a model trained under one backend loads and predicts under the other.
"""

import functools

import keras


@functools.cache
def kernel_runs(dtype: str) -> bool:
    """Whether TensorFlow's fused kernel runs `dtype` here, forward and backward. oneDNN's bfloat16 batch
    norm needs AVX-512: on an AVX2-only CPU (and under ONEDNN_MAX_CPU_ISA=AVX2) it has no primitive and fails
    when the step runs, not when it is traced. Tried once per process, eagerly, on a tiny tensor."""
    import tensorflow as tf

    with tf.init_scope():
        try:
            x = tf.ones((2, 1, 1, 2), dtype)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, tf.ones([2]), tf.zeros([2]), is_training=True)
            tape.gradient(y, x)
            return True
        except tf.errors.OpError:
            return False


@keras.saving.register_keras_serializable(package="pipeline")
class BatchNorm(keras.layers.BatchNormalization):
    def _fused(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis in (-1, len(inputs.shape) - 1)
            and len(inputs.shape) in (2, 4)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        shape = tf.shape(inputs)
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16) or (
            x.dtype != tf.float32 and not kernel_runs(x.dtype.name)
        ):
            x = tf.cast(x, tf.float32)  # the kernel in float32 where this CPU has none in x's type
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
            )
            n = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * (n - 1.0) / tf.maximum(n, 1.0)  # the kernel's is unbiased; Keras keeps the biased
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        y = y if len(inputs.shape) == 4 else tf.reshape(y, shape)
        return tf.cast(y, self.compute_dtype)
