"""Training images/s of a keras_resnets model on the current Keras backend, two ways: through
`training`'s own loop (`training.keras_loop.KerasTrainer`, what `python -m training.fit` runs on
JAX and PyTorch) and through a bare `model.fit` of the same builder on arrays already on the
device. `bench.gpu_check` calls each in a fresh process (`bench.harness.run_isolated`) with
`KERAS_BACKEND` set.

Both are timed by the same `StepTimer`: the first epoch is warm-up (compilation, autotuning);
in every later epoch the clock runs from the end of its first step to the end of its last, each
end taken once the device has finished (`settled_iterations`), so steps still queued by
asynchronous dispatch are counted where they ran. The per-epoch start-up (a new `fit` call and
input iterator in the package's loop) is outside the clock: the figure is the step's.
"""

import time
from typing import Any, Dict, List

import keras

TRAINING = "training"
BARE_FIT = "bare_fit"
# bench.gpu_check's dtype policy -> training.config's mixed_precision setting.
MIXED_PRECISION = {"mixed_bfloat16": "bfloat16", "float32": "none"}


def settled_iterations(model) -> int:
    """The optimizer's step count once every dispatched step has finished on the device.

    On JAX, `fit` keeps the state outside the model's variables during an epoch;
    `jax_state_sync` writes it back (the loop then re-reads it, as after any callback that
    syncs). Converting the count to NumPy waits for the step that produced it."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class StepTimer(keras.callbacks.Callback):
    """Times the training steps of every epoch after the first, from the end of each epoch's
    first step to the end of its last. It adds no per-batch end hook, so Keras' asynchronous
    dispatch of batch callbacks stays as it would be without it.

    Args:
        warmup_epochs: int. Epochs left untimed at the start. Defaults to `1`.
    """

    def __init__(self, warmup_epochs: int = 1):
        super().__init__()
        self.warmup_epochs = warmup_epochs
        self.epochs_seen = 0
        self.windows: List[Dict[str, float]] = []  # one per timed epoch: steps, seconds
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1 and self.epochs_seen >= self.warmup_epochs:
            self._start = (settled_iterations(self.model), time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:
            iterations, started = self._start
            done = settled_iterations(self.model)
            self.windows.append({"steps": done - iterations,
                                 "seconds": time.perf_counter() - started})
        self.epochs_seen += 1

    def summary(self, batch_size: int) -> Dict[str, Any]:
        """`images_per_s` over all timed steps, `epoch_images_per_s` per epoch, `timed_steps`,
        `timed_seconds`."""
        steps = sum(w["steps"] for w in self.windows)
        seconds = sum(w["seconds"] for w in self.windows)
        if not steps:
            raise ValueError("no step was timed: give at least 2 epochs of at least 2 steps.")
        return {"images_per_s": batch_size * steps / seconds,
                "epoch_images_per_s": [batch_size * w["steps"] / w["seconds"]
                                       for w in self.windows],
                "timed_steps": steps, "timed_seconds": seconds}


def device_description() -> Dict[str, str]:
    """The Keras backend and the platform and kind of its first device."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return {"backend": backend, "platform": device.platform, "device": device.device_kind}
    if backend == "torch":
        import torch

        cuda = torch.cuda.is_available()
        return {"backend": backend, "platform": "gpu" if cuda else "cpu",
                "device": torch.cuda.get_device_name(0) if cuda else "cpu"}
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {"backend": backend, "platform": "gpu" if gpus else "cpu",
            "device": gpus[0].name if gpus else "cpu"}


def _check(steps, epochs):
    if steps < 2 or epochs < 2:
        raise ValueError(f"steps and epochs must be at least 2 (one warm-up epoch, one untimed "
                         f"step per epoch); got steps={steps}, epochs={epochs}.")


def training_loop(model: str, batch_size: int, steps: int, epochs: int, image_size: int,
                  classes: int = 1000, policy: str = "mixed_bfloat16") -> Dict[str, Any]:
    """`KerasTrainer` on `dataset="synthetic"`: `epochs` epochs of `steps` steps (the synthetic
    split holds `batch_size * steps` images, fed by the loop's own input pipeline without
    augmentation or normalization, whose CPU cost `bench.pipeline` measures), SGD with
    momentum 0.9, no weight decay or label smoothing, nothing evaluated or written."""
    from training import config as config_lib
    from training import keras_loop

    _check(steps, epochs)
    config = config_lib.from_settings(dict(
        model=model, dataset="synthetic", synthetic_examples=batch_size * steps,
        image_size=image_size, augmentation="none", normalization="none",
        num_classes=classes, global_batch_size=batch_size,
        epochs=epochs, mixed_precision=MIXED_PRECISION[policy], optimizer="sgd",
        momentum=0.9, weight_decay=0.0, label_smoothing=0.0, evaluate_test=False,
        save_model=False, verbose=0))
    timer = StepTimer()
    trainer = keras_loop.KerasTrainer(config)
    trainer.fit(callbacks=[timer])
    return {"contender": TRAINING, "model": model, "batch_size": batch_size,
            "policy": trainer.policy, "parameters": int(trainer.model.count_params()),
            **device_description(), **timer.summary(batch_size)}


def bare_fit(model: str, batch_size: int, steps: int, epochs: int, image_size: int,
             classes: int = 1000, policy: str = "mixed_bfloat16") -> Dict[str, Any]:
    """`model.fit` of `keras_resnets.get_model(model)` on one random batch made on the device
    and fed `steps` times per epoch; the optimizer, loss and metrics are the ones
    `KerasTrainer` compiles (SGD with momentum 0.9, cross-entropy on one-hot targets,
    accuracy and cross-entropy)."""
    import keras_resnets

    _check(steps, epochs)
    keras.config.set_dtype_policy(policy)
    network = keras_resnets.get_model(model, data_format="channels_last", classes=classes,
                                      input_shape=(image_size, image_size, 3))
    keras.config.set_dtype_policy("float32")
    network.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                    loss=keras.losses.CategoricalCrossentropy(),
                    metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                             keras.metrics.CategoricalCrossentropy(name="cross_entropy")])
    seeds = keras.random.SeedGenerator(0)
    images = keras.random.uniform((batch_size, image_size, image_size, 3), seed=seeds)
    labels = keras.ops.one_hot(
        keras.random.randint((batch_size,), 0, classes, seed=seeds), classes)

    def batches():  # fit takes a generator (not any iterator) of backend tensors as they are
        while True:
            yield images, labels

    timer = StepTimer()
    network.fit(batches(), steps_per_epoch=steps, epochs=epochs, callbacks=[timer],
                shuffle=False, verbose=0)
    return {"contender": BARE_FIT, "model": model, "batch_size": batch_size, "policy": policy,
            "parameters": int(network.count_params()), **device_description(),
            **timer.summary(batch_size)}
