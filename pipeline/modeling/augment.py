"""On-the-fly augmentation as one batched affine warp inside the compiled training step.

Keras's RandomRotation/RandomZoom/RandomTranslation would chain three warps, each interpolating
the image again; this layer draws one rotation+zoom+shift matrix per image and warps the whole
batch in a single `keras.ops.image.affine_transform` call.
"""

import math

import keras
from keras import ops

from pipeline.config import IMAGE_SIDE


@keras.saving.register_keras_serializable(package="pipeline")
class RandomAffine(keras.layers.Layer):
    def __init__(self, rotation=10.0, zoom=0.1, shift=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift, self.seed = rotation, zoom, shift, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        n = ops.shape(images)[0]

        def uniform(limit):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        angle = uniform(math.radians(self.rotation))
        scale = 1.0 + uniform(self.zoom)
        tx, ty = uniform(self.shift * IMAGE_SIDE), uniform(self.shift * IMAGE_SIDE)
        # affine_transform maps each output pixel (x, y) to the input pixel
        # (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate and zoom about the centre, then shift.
        cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
        c = (IMAGE_SIDE - 1) / 2.0
        a2 = c - cos * c + sin * c + tx
        b2 = c - sin * c - cos * c + ty
        zeros = ops.zeros_like(cos)
        transform = ops.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
        warped = ops.image.affine_transform(
            ops.expand_dims(images, -1), transform, interpolation="bilinear",
            fill_mode="constant", fill_value=0, data_format="channels_last",
        )
        return ops.squeeze(warped, -1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"rotation": self.rotation, "zoom": self.zoom,
                                       "shift": self.shift, "seed": self.seed}
