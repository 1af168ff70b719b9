"""On-the-fly augmentation as one batched affine warp inside the compiled training step.

Keras's RandomRotation/RandomZoom/RandomTranslation would chain three warps, each interpolating
the image again; this layer draws one rotation+zoom+shift matrix per image and warps the whole
batch once. Under JAX the warp is bilinear interpolation written as four gathers (`warp`): it
computes what `keras.ops.image.affine_transform` does (tested to 1e-5) ~6x faster on this CPU
(0.5 ms against 3.2 ms per batch of 128), which took the seed model's augmented epoch from
4.0 s to 2.3 s. Under TensorFlow (the CNN's backend, run without XLA) the native
ImageProjectiveTransformV3 kernel is the faster one (14 s against ~17-21 s per CNN epoch), so
there the layer keeps `affine_transform` (`native_warp`).
"""

import math

import keras
from keras import ops

from pipeline.config import IMAGE_SIDE


def affine_matrices(angle, scale, tx, ty):
    """Per image (a0, a1, a2, b0, b1, b2): output pixel (x, y) samples input pixel
    (a0 x + a1 y + a2, b0 x + b1 y + b2), a rotation and zoom about the centre, then a shift."""
    cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
    c = (IMAGE_SIDE - 1) / 2.0
    a2 = c - cos * c + sin * c + tx
    b2 = c - sin * c - cos * c + ty
    return cos, -sin, a2, sin, cos, b2


def affine_sources(images, a0, a1, a2, b0, b1, b2):
    """(x, y) of the input pixel each output pixel samples, (n, side, side) each."""
    grid = ops.arange(IMAGE_SIDE, dtype=images.dtype)
    xs, ys = grid[None, None, :], grid[None, :, None]

    def per_image(v):
        return ops.reshape(v, (-1, 1, 1))

    return (
        per_image(a0) * xs + per_image(a1) * ys + per_image(a2),
        per_image(b0) * xs + per_image(b1) * ys + per_image(b2),
    )


def warp(images, a0, a1, a2, b0, b1, b2, displacement=None):
    """Bilinear affine warp of (n, side, side) images, zero outside the input; `displacement`
    ((n, side, side, 2): dx, dy in pixels) moves each sampling point further (elastic distortion)."""
    src_x, src_y = affine_sources(images, a0, a1, a2, b0, b1, b2)
    if displacement is not None:
        src_x, src_y = src_x + displacement[..., 0], src_y + displacement[..., 1]
    return sample(images, src_x, src_y)


def sample(images, src_x, src_y):
    """Bilinear interpolation of (n, side, side) images at per-pixel points, as four gathers."""
    n, side = ops.shape(images)[0], IMAGE_SIDE
    x0, y0 = ops.floor(src_x), ops.floor(src_y)
    fx, fy = src_x - x0, src_y - y0
    flat = ops.reshape(images, (n, side * side))

    def tap(y, x):  # the input pixel at (y, x) of every output pixel; 0 where it lies outside
        inside = (x >= 0) & (x <= side - 1) & (y >= 0) & (y <= side - 1)
        index = ops.cast(ops.clip(y, 0, side - 1) * side + ops.clip(x, 0, side - 1), "int32")
        value = ops.take_along_axis(flat, ops.reshape(index, (n, side * side)), axis=1)
        return ops.reshape(value, (n, side, side)) * ops.cast(inside, images.dtype)

    top = (1 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1)
    bottom = (1 - fx) * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)
    return (1 - fy) * top + fy * bottom


def native_warp(images, a0, a1, a2, b0, b1, b2):
    """The same warp by `keras.ops.image.affine_transform` (one kernel under TensorFlow)."""
    zeros = ops.zeros_like(a0)
    transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    warped = ops.image.affine_transform(
        ops.expand_dims(images, -1),
        transform,
        interpolation="bilinear",
        fill_mode="constant",
        fill_value=0,
        data_format="channels_last",
    )
    return ops.squeeze(warped, -1)


def gaussian_kernel(sigma: float):
    """A normalised 1-D Gaussian, 3 sigma each side."""
    radius = int(3 * sigma + 0.5)
    x = ops.arange(-radius, radius + 1, dtype="float32")
    k = ops.exp(-(x**2) / (2 * sigma**2))
    return k / ops.sum(k)


def elastic_field(uniform, alpha: float, sigma: float):
    """Simard et al.'s elastic distortion: a field of uniform(-1, 1) displacements, smoothed by a
    Gaussian of `sigma` pixels (two 1-D convolutions) and scaled by `alpha` pixels. (n, side, side, 2)."""
    k = gaussian_kernel(sigma)
    n = ops.shape(uniform)[0]
    field = ops.reshape(ops.transpose(uniform, (0, 3, 1, 2)), (-1, IMAGE_SIDE, IMAGE_SIDE, 1))  # (2n, side, side, 1)
    field = ops.conv(field, ops.reshape(k, (-1, 1, 1, 1)), padding="same")
    field = ops.conv(field, ops.reshape(k, (1, -1, 1, 1)), padding="same")
    return alpha * ops.transpose(ops.reshape(field, (n, 2, IMAGE_SIDE, IMAGE_SIDE)), (0, 2, 3, 1))


@keras.saving.register_keras_serializable(package="pipeline")
class RandomAffine(keras.layers.Layer):
    """Rotation (degrees), zoom and shift (fractions), drawn per image; with `crop` > 0 (pixels), a random
    crop of that side resized to the image's in place of zoom and shift; with `elastic` > 0 (alpha, in
    pixels) also an elastic distortion of smoothness `elastic_sigma` pixels, in the same single warp."""

    def __init__(self, rotation=10.0, zoom=0.1, shift=0.1, elastic=0.0, elastic_sigma=4.0, crop=0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift, self.seed = rotation, zoom, shift, seed
        self.elastic, self.elastic_sigma, self.crop = elastic, elastic_sigma, crop
        self.seed_generator = keras.random.SeedGenerator(seed)
        # False passes the images through as they are, in training too: the trainer's clean_tail epochs. Not a
        # weight (it would count as a parameter of every augmented model): the trainer retraces the step instead.
        self.active = True

    def call(self, images, training=False):
        if not training or not self.active:
            return images
        n = ops.shape(images)[0]

        def uniform(limit):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        angle = uniform(math.radians(self.rotation))
        if self.crop:  # a crop-x-crop window at a random place, resized to the side (Doucet's), for zoom and shift
            scale = ops.ones_like(angle) * (IMAGE_SIDE / self.crop)
            tx, ty = uniform((IMAGE_SIDE - self.crop) / 2), uniform((IMAGE_SIDE - self.crop) / 2)
        else:
            scale = 1.0 + uniform(self.zoom)
            tx, ty = uniform(self.shift * IMAGE_SIDE), uniform(self.shift * IMAGE_SIDE)
        matrices = affine_matrices(angle, scale, tx, ty)
        if self.elastic:  # the native kernel warps affinely only: the gathers take the field too
            noise = keras.random.uniform((n, IMAGE_SIDE, IMAGE_SIDE, 2), -1.0, 1.0, seed=self.seed_generator)
            return warp(images, *matrices, displacement=elastic_field(noise, self.elastic, self.elastic_sigma))
        fastest = native_warp if keras.backend.backend() == "tensorflow" else warp
        return fastest(images, *matrices)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {
            "rotation": self.rotation,
            "zoom": self.zoom,
            "shift": self.shift,
            "elastic": self.elastic,
            "elastic_sigma": self.elastic_sigma,
            "crop": self.crop,
            "seed": self.seed,
        }
