"""Training on JAX and PyTorch: Keras' own `model.fit`, fed by the package's tf.data pipeline.

`training.trainer` is a TensorFlow loop (tf.distribute, `tf.train.Checkpoint`); on the other
Keras backends the train step is Keras' (`keras.Model.fit`, one call per epoch), with what the
package's loop promises about the numbers: the optimizer of `training.optimizers` over the
schedule of `training.schedules`, the papers' coupled weight decay as the loss term
`0.5 * wd * sum(w**2)` over the same variables (`training.steps.decayed_variables`), label
smoothing of sparse and soft (MixUp / CutMix) targets, the dtype policy of
`runtime.mixed_precision`, evaluation of every example of the validation and test splits (the
ten crops averaged with `eval_crops=10`), and in the model directory `config.json`,
`history.csv`, `curves.png`, `results.json` and the `model.keras` export (`training.outputs`,
`training.report`, `training.export`), and a checkpoint at the end of each epoch
(`training.keras_checkpoints`: weights, optimizer, epoch, step, history) from which rerunning
the same settings resumes. tf.data feeds every backend, as Keras allows
(https://keras.io/getting_started/#multi-backend-keras); where TensorFlow is not installed,
`training.numpy_data` does (`training.loaders.make_pipeline`).

What the package's loop adds and this one does not yet do, `UNSUPPORTED` lists;
`KerasTrainer` refuses such settings with one line.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
from keras import ops

from training import export as export_lib
from training import finetune as finetune_lib
from training import loaders, optimizers, report, schedules, serving
from training import runtime as runtime_lib
from training.config import ExperimentConfig
from training.dirlock import DirectoryLock

# Setting -> (is it set?, why it is refused) on the Keras loop.
UNSUPPORTED = {
    "ema_decay": (lambda c: c.optimization.ema_decay is not None,
                  "the weight average is kept by the tensorflow loop only"),
    "clip_global_norm": (lambda c: c.optimization.clip_global_norm is not None,
                         "clipping by the global norm is done by the tensorflow loop only"),
    "init_weights": (lambda c: bool(c.finetune.init_weights),
                     "initial weights are loaded by the tensorflow loop only"),
    "checkpoint_every_steps": (lambda c: c.runtime.checkpoint_every_steps > 0,
                               "the Keras loop checkpoints at the end of each epoch only"),
}


def check_supported(config: ExperimentConfig, backend: str) -> None:
    """Raises a `ValueError` naming the first setting of `config` the Keras loop lacks."""
    for name, (is_set, why) in UNSUPPORTED.items():
        if is_set(config):
            raise ValueError(f"{name} is not available on the {backend} backend: {why}; "
                             "use --backend=tensorflow.")


class CrossEntropy(keras.losses.Loss):
    """Cross-entropy of one-hot or soft targets with label smoothing, as
    `training.steps.cross_entropy` computes it (targets smoothed towards uniform).

    Args:
        label_smoothing: float. Defaults to `0.0`.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "cross_entropy"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(
            ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"),
            label_smoothing=self.label_smoothing)


class _DecayedLossModel(keras.Model):
    """A functional model whose training loss adds the coupled weight decay of `decayed`."""

    def __init__(self, inputs, outputs, name, decayed=(), weight_decay=0.0):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self._decayed_ids = {id(v) for v in decayed}
        self._weight_decay = weight_decay

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if not self._weight_decay:
            return loss
        decayed = [v for v in self.trainable_variables if id(v) in self._decayed_ids]
        penalty = sum(ops.sum(ops.square(ops.cast(v, "float32"))) for v in decayed)
        return loss + 0.5 * self._weight_decay * penalty


class _DivergenceGuard(keras.callbacks.Callback):
    """Stops `fit` after a batch whose running mean loss (Keras' batch logs) is not finite or
    exceeds `max_loss`; `problem` then says what, `batch` where."""

    def __init__(self, max_loss: float):
        super().__init__()
        self.max_loss, self.problem, self.batch = max_loss, None, None

    def on_train_batch_end(self, batch, logs=None):
        problem = report.loss_problem(float(logs["loss"]), self.max_loss)
        if problem and self.problem is None:
            self.problem, self.batch = problem, batch
            self.model.stop_training = True


class KerasTrainer:
    """Trains an `ExperimentConfig` with Keras' `model.fit` on the current Keras backend.

    Args:
        config: `training.config.ExperimentConfig`. Its settings that exist only on
            TensorFlow are refused by `training.backends.check_settings`, those this loop lacks
            by `check_supported`.
        pipeline: optional `training.data.Pipeline` (or an object with its methods).

    Example:

    ```python
    # KERAS_BACKEND=jax
    from training import config, keras_loop
    experiment = config.recipe("cifar10_resnet20", dataset="synthetic", epochs=2,
                               model_dir="runs/r20_jax", export_format="keras")
    history = keras_loop.KerasTrainer(experiment).fit()
    ```
    """

    def __init__(self, config: ExperimentConfig, pipeline=None):
        from training import backends
        from training.loaders import make_pipeline

        if not isinstance(config, ExperimentConfig):
            raise ValueError(f"config must be an ExperimentConfig; got {config!r}.")
        self.backend = keras.backend.backend()
        backends.check_settings(config, self.backend)
        check_supported(config, self.backend)
        self.config = config
        optimization, settings = config.optimization, config.runtime
        self.model_dir = settings.model_dir
        self._lock = DirectoryLock(self.model_dir, argument="model_dir").acquire() if (
            self.model_dir) else None
        try:
            self._set_up(pipeline or make_pipeline(config.data), optimization, settings)
            self._resumed = self._restore()
        except BaseException:
            self.close()
            raise

    def _set_up(self, pipeline, optimization, settings):
        from training.loop_common import decayed_variables

        self.pipeline, self.info = pipeline, pipeline.info
        self.monitor = report.monitor_of(self.info)  # the key of the best epoch
        self.batch = optimization.global_batch_size
        self.steps_per_epoch = int(pipeline.steps_per_epoch(self.batch))
        self.total_steps = optimization.steps(self.steps_per_epoch)
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = schedules.build(optimization, self.steps_per_epoch)
        self.policy = runtime_lib.dtype_policy(settings.mixed_precision)
        runtime_lib.seed_everything(settings.seed, settings.deterministic)
        with runtime_lib.policy_scope(self.policy):
            built = self.config.model.build(self.info.num_classes, self.info.image_shape)
            self.architecture = self.config.model.architecture()
            self.freezing = finetune_lib.freeze(built, self.config.finetune)
            decayed = decayed_variables(built, optimization.decay_bn_and_bias)
            coupled = optimization.decay_mode() == "coupled"
            single = len(built.inputs) == 1  # a one-input model takes a tensor, not a list
            self.model = _DecayedLossModel(
                built.inputs[0] if single else built.inputs, built.outputs, built.name, decayed,
                optimization.weight_decay if coupled else 0.0)
            self.optimizer = optimizers.build(optimization, self.schedule, self.policy,
                                              self.model, decayed)
        smoothing = optimization.label_smoothing
        self.model.compile(
            optimizer=self.optimizer, loss=CrossEntropy(smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.CategoricalCrossentropy(name="cross_entropy",
                                                           label_smoothing=smoothing)],
            jit_compile={"auto": "auto", "true": True, "false": False}[settings.jit_compile])
        self.results: Dict[str, Any] = {}
        self.history: List[Dict[str, Any]] = []

    def _restore(self) -> Optional[Dict[str, Any]]:
        """The state of the model directory's checkpoint, its weights and optimizer loaded;
        `None` for a new run. A directory of another run or of the tensorflow loop is
        refused."""
        from training import keras_checkpoints

        if not (self.model_dir and os.path.exists(os.path.join(self.model_dir, "config.json"))):
            return None
        with open(os.path.join(self.model_dir, "config.json")) as file:
            before = json.load(file)
        if before != json.loads(json.dumps(self.config.to_dict())):
            raise ValueError(f"model_dir={self.model_dir!r} holds a run with other settings; "
                             "the Keras loop resumes only the same settings: use a new "
                             "model_dir.")
        self.optimizer.build(self.model.trainable_variables)  # its variables, to load into
        state = keras_checkpoints.load(self.model_dir, self.model)
        if state is None:
            raise ValueError(f"model_dir={self.model_dir!r} holds a run without a checkpoint "
                             f"of the Keras loop (keras_state.json); on {self.backend} use a "
                             "new model_dir.")
        self.history = state["history"]
        return state

    def close(self) -> None:
        """Releases the model directory's lock."""
        if self._lock is not None:
            self._lock.release()

    def evaluate(self, split: str = "test") -> Dict[str, float]:
        """Evaluates the current weights on every example of a split once (as
        `training.trainer.Trainer.evaluate`): `loss` (without label smoothing), `accuracy`,
        `error`, `examples` and, with more than five classes, `top5_accuracy`, `top5_error`."""
        from training.loop_common import evaluation_metrics

        sums = np.zeros(4)  # loss, correct, correct in the top 5, count
        for images, labels in loaders.numpy_batches(self.pipeline.evaluation(split, self.batch)):
            crops = images.shape[1] if images.ndim == 5 else 1
            flat = images.reshape((-1, *images.shape[-3:]))
            probs = ops.convert_to_numpy(self.model(flat, training=False)).astype("float64")
            probs = probs.reshape((len(labels), crops, -1)).mean(axis=1)
            labels = labels.reshape(-1).astype("int64")
            picked = np.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
            top5 = np.argsort(-probs, axis=1)[:, :5]
            sums += (-np.log(np.clip(picked, 1e-7, 1.0)).sum(),
                     (probs.argmax(axis=1) == labels).sum(), (top5 == labels[:, None]).sum(),
                     len(labels))
        return evaluation_metrics(sums, self.info.num_classes, split, self.info.name)

    def fit(self, callbacks: Optional[Sequence[keras.callbacks.Callback]] = None
            ) -> keras.callbacks.History:
        """Trains to the end, evaluating every `eval_every_epochs`; `self.results` then holds
        the contents of `results.json`.

        Args:
            callbacks: Keras callbacks, given to `model.fit`.

        Returns:
            A `keras.callbacks.History` with the rows of `history.csv` (one per epoch).

        Raises:
            TrainingDiverged: the epoch's running mean loss (with the coupled decay) became
                non-finite or exceeded `max_loss` (results.json then says "diverged").
        """
        from training.loop_common import epoch_logs

        settings = self.config.runtime
        if self._lock is not None:
            self._lock.acquire()
        try:
            self._write_start()
            self._log(f"Training {self.model.name} on {self.info.name} with Keras' fit on "
                      f"{self.backend}: {self.epochs} epochs of {self.steps_per_epoch} steps, "
                      f"batch {self.batch}, {self.policy}.")
            resumed = self._resumed or {"epoch": 0, "step": 0, "train_seconds": 0.0}
            if self._resumed:
                self._log(f"Resuming after epoch {resumed['epoch']} (step {resumed['step']}).")
            started, train_seconds, step = (time.time(), resumed["train_seconds"],
                                            resumed["step"])
            for epoch in range(resumed["epoch"], self.epochs):
                steps = min(self.steps_per_epoch, self.total_steps - step)
                data = loaders.fit_input(self.pipeline.train(epoch, self.batch),
                                         self.info.num_classes)
                tick, guard = time.time(), _DivergenceGuard(settings.max_loss)
                logs = self.model.fit(data, initial_epoch=epoch, epochs=epoch + 1,
                                      steps_per_epoch=steps,
                                      callbacks=[guard, *(callbacks or [])],
                                      shuffle=False,  # the pipeline shuffles, per epoch
                                      verbose=1 if settings.verbose == 1 else 0).history
                seconds = time.time() - tick
                train_seconds += seconds
                if guard.problem:
                    self._diverged(epoch, step + guard.batch + 1, guard.problem,
                                   train_seconds, time.time() - started)
                step += steps
                row = {"epoch": epoch + 1, "step": step, "loss": logs["cross_entropy"][-1],
                       "accuracy": logs["accuracy"][-1], "error": 1 - logs["accuracy"][-1],
                       "learning_rate": float(self.schedule(step - 1)),
                       "images_per_second": self.batch * steps / seconds,
                       "epoch_seconds": seconds}
                if (epoch + 1) % settings.eval_every_epochs == 0 or epoch + 1 == self.epochs:
                    for split in (["validation"] if self.info.validation_examples else []) + (
                            ["test"] if settings.evaluate_test else []):
                        row.update(epoch_logs(split, self.evaluate(split)))
                self.history.append(row)
                self._log(report.epoch_line(epoch + 1, self.epochs, row, seconds, None))
                self._write_epoch(final=epoch + 1 == self.epochs)
                self._save(epoch + 1, step, train_seconds)
                if self.model.stop_training:
                    break
            status = "completed" if step >= self.total_steps else "stopped"
            self.results = self._results(status, step, train_seconds, time.time() - started)
            self._export()
            self._write("results.json", self.results)
            self._log(report.finished_line(status, self.results, self.model_dir))
        finally:
            self.close()
        history = keras.callbacks.History()
        history.history = {key: [row.get(key) for row in self.history]
                           for key in self.history[0]} if self.history else {}
        return history

    def _diverged(self, epoch, update, problem, train_seconds, wall_seconds):
        """Writes results.json with status "diverged" and raises `TrainingDiverged`."""
        from training.interrupts import TrainingDiverged

        message = (f"Training diverged in update {update} of {self.total_steps} (epoch "
                   f"{epoch + 1}): {problem}. Stopped; the Keras loop keeps no checkpoint. "
                   f"Lower the learning rate (now {self.config.optimization.learning_rate}) "
                   "or check the data.")
        self._log(message)
        self.results = self._results("diverged", update, train_seconds, wall_seconds)
        self.results["message"] = message
        if self.model_dir:
            self._write("results.json", self.results)
        raise TrainingDiverged(message)

    def _results(self, status, step, train_seconds, wall_seconds) -> Dict[str, Any]:
        """`results.json`: the keys of `training.report.results` that this loop knows."""
        rows = self.history
        monitored = [row for row in rows if self.monitor in row]
        best = max(monitored, key=lambda row: row[self.monitor]) if monitored else None
        return {
            "status": status, "message": "", "backend": self.backend,
            "recipe": self.config.name, "model": self.model.name,
            "architecture": {"depth": self.architecture.depth,
                             **dataclasses.asdict(self.architecture)},
            "parameters": int(self.model.count_params()),
            "trainable_parameters": self.freezing.trainable_parameters,
            "dataset": self.info.name, "class_names": list(self.info.class_names),
            "epochs": len(rows), "epochs_planned": self.epochs, "steps": step,
            "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "global_batch_size": self.batch, "dtype_policy": self.policy,
            **report.optimizer_summary(self.config.optimization),
            "train_seconds": train_seconds, "wall_seconds": wall_seconds,
            "images_per_second": self.batch * step / train_seconds if train_seconds else None,
            "monitor": self.monitor, "best_epoch": best["epoch"] if best else None,
            **report.split_results(rows),
            "config": self.config.to_dict(),
        }

    def _save(self, epochs_done, step, train_seconds):
        if self.model_dir:
            from training import keras_checkpoints

            keras_checkpoints.save(self.model_dir, self.model, {
                "epoch": epochs_done, "step": step, "train_seconds": train_seconds,
                "history": self.history})

    def _write_start(self):
        if self.model_dir:
            os.makedirs(self.model_dir, exist_ok=True)
            self._write("config.json", self.config.to_dict())

    def _write_epoch(self, final):
        if self.model_dir:
            from training import outputs

            outputs.write_history(self.model_dir, self.history,
                                  title=f"{self.config.name}: {self.model.name} on "
                                        f"{self.info.name}", plot=final)

    def _export(self):
        settings = self.config.runtime
        if not (self.model_dir and settings.save_model):
            return
        network = export_lib.float32_copy(self.model, self.config.model, self.info)
        self.results["exports"] = export_lib.export(
            network, serving.Preprocessing.from_pipeline(self.pipeline),
            self.info.class_names, self.model_dir, settings.export_format)

    def _write(self, name, data):
        from training import outputs

        path = os.path.join(self.model_dir, name)
        try:
            outputs.atomic_write(path, outputs.to_json(data).encode())
        except OSError as error:
            raise outputs.RunDirectoryError(f"Could not write {path}: "
                                            f"{error.strerror or error}.") from None

    def _log(self, message):
        if self.config.runtime.verbose:
            print(message, flush=True)
