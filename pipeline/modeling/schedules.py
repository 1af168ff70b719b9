"""Learning-rate schedules beyond Keras's own, serializable so that a checkpoint resumes with them."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="pipeline")
class DecayThenTail(keras.optimizers.schedules.LearningRateSchedule):
    """Doucet's schedule (github ttdoucet/mnist): `initial` decaying exponentially to `initial x
    decay` over `decay_steps`, then a tail at `initial x tail` (1000x lower): the last epoch settles
    the weights instead of moving them, so the final weights are the ones kept, with nothing picked
    on held-out rows."""

    def __init__(self, initial: float, decay_steps: int, decay: float = 0.1, tail: float = 1e-3):
        self.initial, self.decay_steps, self.decay, self.tail = initial, decay_steps, decay, tail

    def __call__(self, step):
        step = ops.cast(step, "float32")
        progress = ops.minimum(step / self.decay_steps, 1.0)
        decayed = self.initial * ops.power(self.decay, progress)
        return ops.where(step < self.decay_steps, decayed, self.initial * self.tail)

    def get_config(self):
        return {"initial": self.initial, "decay_steps": self.decay_steps, "decay": self.decay, "tail": self.tail}
