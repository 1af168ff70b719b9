"""Each augmentation stays within its stated range (pipeline/modeling/augment.py, params.toml):
rotations of up to 10 degrees (degrees, not radians), zooms of up to 10%, shifts of up to 10% of the
side, an elastic distortion of at most `elastic` pixels, and Doucet's random crops (`crop`); inactive (the
trainer's `clean_tail` epochs) the images pass through as they are.

Measured, not read from the code: the layer warps two ramps (each pixel's value its column, or its
row), so every output pixel shows the point of the input it sampled (bilinear interpolation of a
linear ramp is exact). A least-squares fit of those points gives each image's rotation, scale and
shift; for the elastic field, the points minus the pixels are its displacements.
"""

import math

import numpy as np
import pytest

from pipeline.config import IMAGE_SIDE
from pipeline.modeling import backend

backend.init()

N = 256  # images per draw
CENTRE = (IMAGE_SIDE - 1) / 2.0
GRID = np.arange(IMAGE_SIDE, dtype=np.float32)
COLUMNS = np.broadcast_to(GRID[None, :], (IMAGE_SIDE, IMAGE_SIDE))  # value = the pixel's column (x)
ROWS = np.broadcast_to(GRID[:, None], (IMAGE_SIDE, IMAGE_SIDE))  # value = its row (y)
# Output pixels whose sampled point lies inside the input under any allowed warp (within 8 pixels of
# the centre: at most 8 / 0.9 + 2.8 * sqrt(2) = 12.9 pixels out, and the border is 13.5 away).
INNER = (COLUMNS - CENTRE) ** 2 + (ROWS - CENTRE) ** 2 <= 8**2


def sampled_points(layer_of_seed, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the input point each output pixel of N warped images sampled: the same draws (two
    layers of one seed) warp the column ramp and the row ramp."""
    xs = np.asarray(layer_of_seed(seed)(np.repeat(COLUMNS[None], N, axis=0), training=True))
    ys = np.asarray(layer_of_seed(seed)(np.repeat(ROWS[None], N, axis=0), training=True))
    return xs, ys


def fitted_warps(xs: np.ndarray, ys: np.ndarray) -> dict:
    """Per image, the affine map (output pixel -> sampled point) fitted on the INNER pixels: its
    rotation in degrees, its zoom (the factor the image grows by) and its shift in pixels."""
    design = np.stack([COLUMNS[INNER] - CENTRE, ROWS[INNER] - CENTRE, np.ones(INNER.sum())], axis=1)
    angle, zoom, shift, residual = [], [], [], []
    for sx, sy in zip(xs, ys, strict=True):
        targets = np.stack([sx[INNER] - CENTRE, sy[INNER] - CENTRE], axis=1)
        coef, *_ = np.linalg.lstsq(design, targets, rcond=None)
        a = coef[:2].T  # sampled - centre = a @ (pixel - centre) + t
        angle.append(math.degrees(math.atan2(a[1, 0], a[0, 0])))
        zoom.append(1 / math.sqrt(np.linalg.det(a)))
        shift.append(coef[2])
        residual.append(np.abs(design @ coef - targets).max())
    return {"angle": np.array(angle), "zoom": np.array(zoom), "shift": np.array(shift), "residual": max(residual)}


def model_augmentation(**options):
    """The augmentation layer as build_model puts it in front of a model (`make train`'s augment = true)."""
    from pipeline.modeling.models import build_model

    def of_seed(seed):
        return build_model("mlp", augment=True, seed=seed, **options).get_layer("augment")

    return of_seed


def test_the_stated_ranges_are_the_layers_settings():
    layer = model_augmentation()(0)
    assert (layer.rotation, layer.zoom, layer.shift, layer.elastic) == (10.0, 0.1, 0.1, 0.0)


def test_rotation_zoom_and_shift_stay_within_their_ranges_and_use_them():
    warps = fitted_warps(*sampled_points(model_augmentation()))
    assert warps["residual"] < 1e-3  # an affine map, as stated (no elastic field by default)
    angle, zoom, shift = warps["angle"], warps["zoom"], warps["shift"]
    # Degrees: 10 radians read as degrees would turn images by up to 573 degrees, 10 degrees read as
    # radians by 0.17 degrees.
    assert np.abs(angle).max() <= 10 + 1e-3 and np.abs(angle).max() > 9
    assert np.all((0.9 - 1e-4 <= zoom) & (zoom <= 1.1 + 1e-4)) and zoom.min() < 0.91 and zoom.max() > 1.09
    # The shift: each axis up to 10% of the 28-pixel side, measured from where the centre goes.
    centre_moves = shift  # the sampled point of the centre pixel, minus the centre
    assert np.abs(centre_moves).max() <= 2.8 + 1e-3 and np.abs(centre_moves).max() > 2.6
    assert (centre_moves[:, 0] > 1).any() and (centre_moves[:, 0] < -1).any()  # both ways, both axes
    assert (centre_moves[:, 1] > 1).any() and (centre_moves[:, 1] < -1).any()


@pytest.mark.parametrize("alpha", [2.0, 20.0])  # 20: the largest docs/accuracy.md tried on the CNN
def test_the_elastic_field_moves_each_pixel_at_most_alpha_pixels_in_proportion_to_alpha(alpha):
    from pipeline.modeling.augment import RandomAffine

    def alone(alpha):  # the elastic field only: no rotation, zoom or shift
        return lambda seed: RandomAffine(rotation=0.0, zoom=0.0, shift=0.0, elastic=alpha, seed=seed)

    xs, ys = sampled_points(alone(alpha))
    dx, dy = xs - COLUMNS, ys - ROWS
    # Where the point sampled falls outside the input the output is 0, not a coordinate: keep the pixels
    # at least alpha + 1 from the border (all of them when the field is small).
    margin = min(alpha + 1, 8)
    inside = (np.minimum(COLUMNS, ROWS) >= margin) & (np.maximum(COLUMNS, ROWS) <= IMAGE_SIDE - 1 - margin)
    moved = np.maximum(np.abs(dx), np.abs(dy))[:, inside]
    assert moved.max() <= alpha + 1e-3
    assert moved.mean() > 0.01 * alpha  # it moves them (sigma 4 smooths the field to ~4% of alpha)
    # Twice the alpha, twice the displacement: alpha is in pixels, the field's scale.
    dx2 = sampled_points(alone(2 * alpha))[0] - COLUMNS
    np.testing.assert_allclose(dx2[:, inside], 2 * dx[:, inside], atol=1e-3 * alpha)


def test_a_random_crop_is_a_window_of_that_side_resized_to_the_image_at_a_random_place():
    warps = fitted_warps(*sampled_points(model_augmentation(crop=25)))
    assert warps["residual"] < 1e-3
    # A 25-pixel window shown at 28 pixels: every image grows by 28/25, none by more or less.
    np.testing.assert_allclose(warps["zoom"], 28 / 25, rtol=1e-4)
    # The window lies inside the image: its centre moves at most (28 - 25) / 2 = 1.5 pixels on each axis, both ways.
    shift = warps["shift"]
    assert np.abs(shift).max() <= 1.5 + 1e-3 and np.abs(shift).max() > 1.3
    assert (shift < -1).any() and (shift > 1).any()
    assert np.abs(warps["angle"]).max() <= 10 + 1e-3  # the rotation stays


@pytest.mark.parametrize("options", [{}, {"crop": 25, "elastic": 8.0}])
def test_inactive_the_layer_passes_the_images_through_as_they_are(options):
    images = np.random.default_rng(0).random((8, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    layer = model_augmentation(**options)(0)
    assert not np.allclose(np.asarray(layer(images, training=True)), images)
    layer.active = False
    np.testing.assert_allclose(np.asarray(layer(images, training=True)), images, atol=1e-5)


def trained_weights(tmp_path, stop_after=None, **overrides) -> list[np.ndarray]:
    """An MLP after one epoch (or `epochs`) on 64 random images, from one seed: its weights. With
    `stop_after`, the run is stopped after that many epochs, then resumed from its checkpoint to the end."""
    from pipeline import params
    from pipeline.modeling.trainer import fit

    rng = np.random.default_rng(0)
    x, y = rng.random((64, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32), np.arange(64) % 10
    settings = [f"train.mlp.{k}={v}" for k, v in ({"epochs": 1} | overrides).items()]
    p = params.for_model(params.resolve(settings), "mlp")
    work = tmp_path / ("-".join(settings) + f"-stop{stop_after}")

    def stop(row):
        if row["epoch"] + 1 == stop_after:
            raise KeyboardInterrupt

    if stop_after:
        with pytest.raises(KeyboardInterrupt):
            fit(x, y, p, work, verbose=0, on_epoch=stop)
    model, _, _ = fit(x, y, p, work, verbose=0)
    return [np.asarray(v) for v in model.trainable_variables]


def test_a_clean_tail_epoch_trains_on_the_images_as_they_are(tmp_path):
    # The compiled step is traced again when the trainer turns the augmentation off: one epoch with it off makes
    # the weights of one without the layer (the same seed, the same draws), and one with it on does not.
    plain = trained_weights(tmp_path, augment="false")
    clean = trained_weights(tmp_path, augment="true", clean_tail=1)
    augmented = trained_weights(tmp_path, augment="true", clean_tail=0)
    for a, b in zip(plain, clean, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(plain, augmented, strict=True))
    # Turned off after an augmented epoch, once the step is compiled with it: the second epoch then differs
    # from an augmented one (a step not traced again would keep augmenting, and make the same weights).
    tail = trained_weights(tmp_path, augment="true", epochs=2, clean_tail=1)
    augmented_twice = trained_weights(tmp_path, augment="true", epochs=2, clean_tail=0)
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(tail, augmented_twice, strict=True))


def test_a_run_resumed_before_its_clean_tail_trains_the_tail_clean(tmp_path):
    # Stopped after its augmented epoch and resumed from the checkpoint (a fresh layer, switched on), the last
    # epoch is still the clean one: the weights of the run that never stopped.
    whole = trained_weights(tmp_path, augment="true", epochs=2, clean_tail=1)
    resumed = trained_weights(tmp_path, stop_after=1, augment="true", epochs=2, clean_tail=1)
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
