"""Model factories (Keras 3 functional API, backend-agnostic). Input: (batch, 28, 28) rows in [0, 1].

The registry of models: a model is its factory here (in MODELS) and its [train.<name>] section of
params.toml, nothing else. Every list of model names (Make's rules, `make bench`, `make search`, the
parameter checks, the FLOP counts) is read from MODELS. Keras is imported when a factory is called,
not when this module is imported, so the registry can be read without a framework (Make reads it
while it parses, through pipeline/makevars.py, before .venv exists).
"""

from pipeline.config import IMAGE_SIDE, N_CLASSES


def _keras():
    import keras

    return keras


def _seed(seed, i):
    """A dropout layer's own seed. Explicit, because a layer built with seed=None draws one when it
    is built, and again (differently) when a checkpoint is loaded: a resumed run would diverge."""
    return None if seed is None else seed * 100 + i


def _softmax(x):
    """The output layer, in float32 under any precision: a 16-bit softmax rounds small probabilities
    to 0 and the log loss to infinity."""
    return _keras().layers.Dense(N_CLASSES, activation="softmax", dtype="float32", name="digit")(x)


def conv_gru(x, seed=None):
    """The study's encoder-decoder: 28,506 parameters with the old GRU (reset_after=False)."""
    layers = _keras().layers
    x = layers.Conv1D(32, 3, activation="relu", name="conv1")(x)
    x = layers.Conv1D(32, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPool1D(2, name="pool")(x)
    x = layers.GRU(64, return_sequences=True, reset_after=False, name="gru1")(x)
    x = layers.GRU(16, reset_after=False, name="gru2")(x)
    return _softmax(x)


def lstm(x, seed=None):
    """The study's LSTM reading one 28-pixel row per step."""
    layers = _keras().layers
    x = layers.LSTM(128, name="lstm")(x)
    return _softmax(x)


def mlp(x, seed=None):
    """Two hidden layers with dropout on the 784 pixels: the study's 93.68% undersold it."""
    layers = _keras().layers
    x = layers.Flatten(name="pixels")(x)
    for i in (1, 2):
        x = layers.Dense(512, activation="relu", name=f"hidden{i}")(x)
        x = layers.Dropout(0.2, seed=_seed(seed, i), name=f"dropout{i}")(x)
    return _softmax(x)


def cnn(x, width=16, seed=None):
    """The VGG-like CNN behind the best public Digit Recognizer ensembles (conv blocks with
    BatchNorm, a strided 5x5 conv in place of pooling, heavy dropout). Blocks of `width` and
    2 x `width` filters: the public kernels use 32, as params.toml's train.cnn.width does (docs/accuracy.md:
    99.68% against 99.49% at 16 on fold 1, p = 0.002)."""
    from pipeline.modeling.batchnorm import BatchNorm

    layers = _keras().layers
    x = layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="image")(x)
    for block, filters in enumerate((width, 2 * width), start=1):
        for i, (kernel, strides) in enumerate(((3, 1), (3, 1), (5, 2)), start=1):
            x = layers.Conv2D(
                filters,
                kernel,
                strides=strides,
                padding="same" if strides > 1 else "valid",
                use_bias=False,
                name=f"conv{block}_{i}",
            )(x)
            x = BatchNorm(name=f"bn{block}_{i}")(x)
            x = layers.Activation("relu", name=f"relu{block}_{i}")(x)
        x = layers.Dropout(0.4, seed=_seed(seed, block), name=f"dropout{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, use_bias=False, name="dense")(x)
    x = BatchNorm(name="bn_dense")(x)
    x = layers.Activation("relu", name="relu_dense")(x)
    x = layers.Dropout(0.4, seed=_seed(seed, 3), name="dropout_dense")(x)
    return _softmax(x)


def _conv_bn(x, filters, name, relu=True):
    """3x3 convolution (same size), BatchNorm, and a ReLU unless the block adds a shortcut first."""
    from pipeline.modeling.batchnorm import BatchNorm

    layers = _keras().layers
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = BatchNorm(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def resnet(x, width=32, seed=None):
    """A compact residual net in Doucet's family (github ttdoucet/mnist: 99.74% mean of ten single
    nets at 128/256/512 channels): a 3x3 stem, then three stages of `width`, 2x and 4x `width`
    channels at 28, 14 and 7 pixels, each one residual block of two 3x3 convolutions, max-pooling
    between stages, global average pooling. No dropout: the augmentation regularizes it. At width 32
    it costs ~102 MFLOP forward per image (3.5x the CNN's), and trains 11 epochs instead of 30."""
    layers = _keras().layers
    x = layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="image")(x)
    x = _conv_bn(x, width, "stem")
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        if stage > 1:
            x = layers.MaxPool2D(2, name=f"pool{stage}")(x)
            x = _conv_bn(x, filters, f"widen{stage}")  # the channels double after each pooling
        y = _conv_bn(x, filters, f"block{stage}a")
        y = _conv_bn(y, filters, f"block{stage}b", relu=False)
        x = layers.Add(name=f"block{stage}_add")([x, y])
        x = layers.Activation("relu", name=f"block{stage}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return _softmax(x)


MODELS = {"conv_gru": conv_gru, "lstm": lstm, "mlp": mlp, "cnn": cnn, "resnet": resnet}
# The backend a model trains fastest on where nothing was measured (backend = "auto" with PIPELINE_TUNE=off),
# and the one timed first: TensorFlow's oneDNN convolutions beat XLA's ~3x on the CNN (Zen 3 and Zen 5);
# the recurrent and dense models run faster under JAX, the default.
CPU_HINTS = {"cnn": "tensorflow", "resnet": "tensorflow"}

# A factory's own options (its keyword arguments besides the seed), which params.toml's
# [train.<name>] section sets beside the training keys: key -> (type, lowest, highest, highest is inclusive).
OPTIONS = {"cnn": {"width": (int, 1, 1024, True)}, "resnet": {"width": (int, 1, 1024, True)}}

# Models whose one CV fold keeps every core of a CPU busy, so `make cv` trains their folds (and an
# ensemble's) one at a time, the others one per core (mk/cv.mk: the CNN's TensorFlow convolutions fill
# both cores here, two folds side by side take 41 s an epoch each against ~20 s alone).
ONE_FOLD_AT_A_TIME = ("cnn", "resnet")

# The study this project reproduces ("Deep learning techniques on MNIST dataset"): its figure for
# each of its models, on its own single split.
STUDY_ACCURACY = {"mlp": 0.9368, "lstm": 0.9839, "conv_gru": 0.9872}


def build_model(
    name: str, augment: bool = False, seed: int | None = None, elastic: float = 0.0, crop: int = 0, **options
):
    """A model by name; with `augment`, a RandomAffine layer first (active in training only), with
    an elastic distortion of `elastic` pixels when that is above 0, and random crops of `crop` pixels
    in place of zoom and shift when that is above 0.
    `options` go to the factory (cnn, resnet: width)."""
    keras = _keras()
    from pipeline.modeling.augment import RandomAffine

    inputs = keras.Input((IMAGE_SIDE, IMAGE_SIDE), name="rows")
    # float32 under any precision: the warp's coordinates need more than 16 bits (27.5 in bfloat16 is 27.5 +- 0.1).
    x = (
        RandomAffine(elastic=elastic, crop=crop, seed=seed, dtype="float32", name="augment")(inputs)
        if augment
        else inputs
    )
    return keras.Model(inputs, MODELS[name](x, seed=seed, **options), name=name)
