"""The reshape into row sequences, and the models' shapes and parameter counts."""

import os

import numpy as np
import pytest

from pipeline.features import to_sequences
from pipeline.modeling import backend

backend.init()


def test_reshape_keeps_row_order_and_scales():
    pixels = np.arange(2 * 784, dtype=np.int64).reshape(2, 784) % 256
    x = to_sequences(pixels.astype(np.uint8))
    assert x.shape == (2, 28, 28) and x.dtype == np.float32
    # pixel r*28+c is row r, column c (Kaggle's layout: pixelX with X = i*28 + j)
    for r, c in [(0, 0), (0, 27), (1, 0), (27, 27), (13, 5)]:
        assert x[1, r, c] == pytest.approx(pixels[1, r * 28 + c] / 255)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_seed_model_matches_the_study_layer_by_layer():
    from pipeline.modeling.models import build_model

    model = build_model("conv_gru")
    layers = {layer.name: layer for layer in model.layers}
    expected = {  # name: (output shape, parameters)
        "conv1": ((None, 26, 32), 2_720),
        "conv2": ((None, 24, 32), 3_104),
        "pool": ((None, 12, 32), 0),
        "gru1": ((None, 12, 64), 18_624),
        "gru2": ((None, 16), 3_888),
        "digit": ((None, 10), 170),
    }
    for name, (shape, count) in expected.items():
        assert tuple(layers[name].output.shape) == shape, name
        assert layers[name].count_params() == count, name
    assert model.count_params() == 28_506
    assert layers["gru1"].cell.reset_after is False


# That every model maps rows to class probabilities (10 per row, summing to 1) is checked where each one is
# trained: tests/test_learning.py.


def test_augmentation_changes_images_only_in_training():
    from pipeline.modeling.augment import RandomAffine

    layer = RandomAffine(seed=1)
    x = np.zeros((4, 28, 28), np.float32)
    x[:, 10:18, 12:16] = 1.0
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    warped = np.asarray(layer(x, training=True))
    assert warped.shape == x.shape
    assert not np.allclose(warped, x)
    # a rotation/zoom/shift of at most 10% moves ink, it does not erase it
    assert np.all(np.abs(warped.sum(axis=(1, 2)) - x.sum(axis=(1, 2))) < 0.35 * x.sum(axis=(1, 2)))


def test_the_gather_warp_is_kerass_affine_transform():
    """The layer's gather warp computes what keras.ops.image.affine_transform computes (bilinear, zero fill)."""
    from keras import ops

    from pipeline.modeling.augment import affine_matrices, native_warp, warp

    rng = np.random.default_rng(0)
    images = rng.random((6, 28, 28), dtype=np.float32)
    angle = rng.uniform(-0.5, 0.5, 6).astype(np.float32)  # up to ~29 degrees: corners fall outside
    scale = rng.uniform(0.8, 1.2, 6).astype(np.float32)
    tx, ty = (rng.uniform(-4, 4, 6).astype(np.float32) for _ in range(2))
    m = affine_matrices(angle, scale, tx, ty)
    ours = np.asarray(warp(ops.convert_to_tensor(images), *m))
    theirs = np.asarray(native_warp(ops.convert_to_tensor(images), *m))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert not np.allclose(ours, images)


def test_cnn_width_is_a_parameter_of_the_cnn_alone():
    from pipeline import params
    from pipeline.errors import PipelineError
    from pipeline.modeling.models import build_model

    p = params.for_model(params.resolve(["train.cnn.width=32"]), "cnn")
    assert params.architecture(p) == {"width": 32}
    assert params.architecture(params.for_model(params.resolve([]), "conv_gru")) == {}
    # 188 w^2 + 4141 w + 1802: bias-free convs, BatchNorm, a 128-unit dense layer on a 4x4x2w map
    assert build_model("cnn").count_params() == 116_186
    assert build_model("cnn", **params.architecture(p)).count_params() == 326_826
    with pytest.raises(PipelineError, match="unknown parameter 'train.conv_gru.width'"):
        params.resolve(["train.conv_gru.width=32"])


FUSED_BN_CHECK = """
import numpy as np, keras
from pipeline.modeling import backend
backend.init(0, "tensorflow")
from pipeline.modeling import batchnorm
from pipeline.modeling.batchnorm import BatchNorm
# Each precision, and bfloat16 again as a CPU without oneDNN's bfloat16 kernel runs it (in float32).
for policy, kernel in (("float32", True), ("mixed_bfloat16", True), ("mixed_bfloat16", False)):
    keras.mixed_precision.set_global_policy(policy)
    if not kernel:
        batchnorm.kernel_runs = lambda dtype: False
    for shape in ((16, 6, 6, 8), (16, 8)):
        x = np.random.default_rng(0).normal(2, 3, shape).astype("float32")
        ours, theirs = BatchNorm(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
        ours.build(shape); theirs.build(shape)
        ours.set_weights([np.random.default_rng(i).random(w.shape).astype("float32") + 0.5
                          for i, w in enumerate(theirs.get_weights())])
        theirs.set_weights(ours.get_weights())
        for training in (True, False):
            a = np.asarray(ours(x, training=training), "float32")
            b = np.asarray(theirs(x, training=training), "float32")
            assert np.allclose(a, b, atol=2e-5), (policy, shape, training, np.abs(a - b).max())
        for a, b in zip(ours.get_weights(), theirs.get_weights()):  # moving statistics updated alike
            assert np.allclose(a, b, atol=1e-6), (policy, shape, np.abs(a - b).max())
print("same")
"""


def test_the_fused_batch_norm_computes_what_kerass_does():
    """Under TensorFlow, BatchNorm runs one fused kernel; outputs and moving statistics must be Keras's."""
    import subprocess
    import sys

    from tests.helpers import REPO

    proc = subprocess.run(
        [sys.executable, "-c", FUSED_BN_CHECK],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "same", proc.stderr[-2000:]


def fresh_process(script: str, *args) -> list[str]:
    """`python -c script args` in the checkout, its backend its own choice (no KERAS_BACKEND): what it printed."""
    import subprocess
    import sys

    from tests.helpers import REPO

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_under_tensorflow_an_epoch_is_fed_without_autotuning_and_in_the_given_order():
    """Keras's own pipeline for arrays autotunes, and its tuning thread can hold up the end of a pass for up to
    as long again (backend.fit_data); the pipeline's own must keep every row, in order, in the same batches."""
    from pipeline.modeling import backend

    x, y = np.random.default_rng(0).random((300, 28, 28), dtype=np.float32), np.arange(300) % 10
    assert backend.fit_data(x, y, 128) == {"x": x, "y": y, "batch_size": 128}  # this process: JAX, arrays as given
    check = (
        "import numpy as np; from pipeline.modeling import backend; print(backend.init(0, 'tensorflow')); "
        "x = np.random.default_rng(0).random((300, 28, 28), dtype=np.float32); y = np.arange(300) % 10; "
        "feed = backend.fit_data(x, y, 128); data = feed['x']; print(sorted(feed), data.options().autotune.enabled); "
        "batches = list(data.as_numpy_iterator()); print([len(b) for b, _ in batches]); "
        "print(np.array_equal(np.concatenate([b for b, _ in batches]), x), "
        "np.array_equal(np.concatenate([c for _, c in batches]), y)); "
        "print(isinstance(backend.validation_data(x, y, 128), tuple))"
    )
    assert fresh_process(check) == [
        "tensorflow",
        "['x']",
        "False",
        "[128,",
        "128,",
        "44]",
        "True",
        "True",
        "False",
    ]


def test_a_saved_cnn_loads_in_a_fresh_process(tmp_path):
    """Its BatchNorm and RandomAffine layers are the pipeline's own: loading must register them itself.
    Saved here (JAX), loaded and predicting in a fresh TensorFlow process (its fused batch norm): a model
    trained under one backend predicts under the other."""
    from pipeline import files
    from pipeline.modeling.models import build_model

    path = tmp_path / "model.keras"
    build_model("cnn", augment=True, seed=0, width=4).save(path)
    files.write_json(tmp_path / "metrics.json", {"outputs": files.outputs(tmp_path, [path.name])})
    load = (
        "import sys, numpy as np; from pathlib import Path; from pipeline.modeling import backend; "
        "print(backend.init(0, 'tensorflow')); "
        "from pipeline.modeling.predict import load_model, predict_labels; "
        "print(predict_labels(load_model(Path(sys.argv[1])), np.zeros((3, 28, 28), 'float32'))[0].shape)"
    )
    assert fresh_process(load, path) == ["tensorflow", "(3,)"]


def test_a_jax_training_process_never_imports_tensorflow_and_still_writes_its_curves(tmp_path):
    """TensorFlow's import costs ~5.5 s of CPU, and Keras would make it in every process (keras-team/keras#18455):
    a JAX run trains (curves on), saves, loads and predicts without it, and TensorBoard reads the curves. Nor
    does Keras's import load scikit-learn or matplotlib (~1 s more, for wrappers and plots the pipeline never
    uses: backend.KERAS_EXTRAS), which the process can still import for itself afterwards."""

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = (
        "import sys, numpy as np; from pathlib import Path; from pipeline.modeling import backend; "
        "print(backend.init(0, 'jax')); "
        "print([m for m in ('keras', 'sklearn', 'matplotlib') if m in sys.modules]); "
        "from pipeline import params; from pipeline.modeling.trainer import fit; "
        "from pipeline.modeling.predict import predict_labels; import keras; "
        "out = Path(sys.argv[1]); rng = np.random.default_rng(0); "
        "x, y = rng.random((64, 28, 28), dtype=np.float32), np.arange(64) % 10; "
        "p = params.for_model(params.resolve(['train.mlp.epochs=2']), 'mlp'); "
        "model, _, _ = fit(x, y, p, out / 'work', x, y, log_dir=out / 'logs', verbose=0); "
        "model.save(out / 'model.keras'); "
        "print(predict_labels(keras.saving.load_model(out / 'model.keras'), x)[0].shape); "
        "print('tensorflow' in sys.modules); "
        "from sklearn.metrics import accuracy_score; from matplotlib.figure import Figure; "
        "print(accuracy_score([1, 2], [1, 0]), type(Figure()).__name__)"
    )
    assert fresh_process(run, tmp_path) == ["jax", "['keras']", "(64,)", "False", "0.5", "Figure"]
    for split in ("train", "validation"):
        events = EventAccumulator(str(tmp_path / "logs" / split)).Reload()
        assert sorted(events.Tags()["scalars"]) == ["epoch_accuracy", "epoch_loss"]
        assert [e.step for e in events.Scalars("epoch_loss")] == [0, 1]
