"""Training on JAX and PyTorch: Keras' own `model.fit`, fed by the package's tf.data pipeline.

`training.trainer` is a TensorFlow loop (tf.distribute, `tf.train.Checkpoint`); on the other
Keras backends the train step is Keras' (`keras.Model.fit`, one call per epoch), with what the
package's loop promises about the numbers: the optimizer of `training.optimizers` over the
schedule of `training.schedules`, the papers' coupled weight decay as the loss term
`0.5 * wd * sum(w**2)` over the same variables (`training.loop_common.decayed_variables`), label
smoothing of sparse and soft (MixUp / CutMix) targets, clipping by the global norm (Keras'
`global_clipnorm`: the TF loop's rule, `min(1, clip / norm)` of the unscaled gradients), the
weight average of `ema_decay` (`training.keras_ema`; evaluation, the best epoch and the exports
use it), the classifier's learning-rate multiplier `head_lr_multiplier` (`training.keras_model`),
the first weights of `init_weights` (`training.initial_weights`), the dtype policy of
`runtime.mixed_precision`, evaluation of every example of the validation and test splits (the
ten crops averaged with `eval_crops=10`), and in the model directory `config.json`,
`history.csv`, `curves.png`, `results.json` and the `model.keras` export (`training.outputs`,
`training.report`, `training.export`).

It checkpoints (`training.keras_checkpoints`: weights, optimizer, average, position, history) at
the end of each epoch, with a copy of the best epoch's weights, and every
`checkpoint_every_steps` within one (`training.keras_callbacks`); rerunning the same settings
resumes there, within an epoch by skipping the batches done (`pipeline.train(epoch, batch,
skip_batches=k)`: the order is a pure function of `(seed, epoch)`). A SIGKILL at any moment
leaves a directory that resumes. SIGINT and SIGTERM stop the run after the current step with a
checkpoint of it and `TrainingInterrupted` (`python -m training.fit` exits with 130 / 143), as
on TensorFlow; the processes of a multi-process run agree on the step to stop after, so a
signal that reaches only some of them stops them all there. tf.data feeds every backend, as
Keras allows (https://keras.io/getting_started/#multi-backend-keras); where TensorFlow is not
installed, `training.numpy_data` does (`training.loaders.make_pipeline`).
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
from training import (
    jax_distribution,
    keras_callbacks,
    keras_checkpoints,
    keras_ema,
    loaders,
    optimizers,
    report,
    schedules,
    serving,
)
from training import runtime as runtime_lib
from training.config import ExperimentConfig
from training.dirlock import DirectoryLock
from training.keras_model import TrainingModel, training_loss
from training.loop_common import random_states, set_random_states


class KerasTrainer:
    """Trains an `ExperimentConfig` with Keras' `model.fit` on the current Keras backend.

    Args:
        config: `training.config.ExperimentConfig`. Its settings that exist only on
            TensorFlow are refused by `training.backends.check_settings`.
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
        # A pretrained source fixes the layer settings and the input normalisation.
        config, self.finetune_notes = finetune_lib.resolve(config)
        self.config = config
        optimization, settings = config.optimization, config.runtime
        self.model_dir = settings.model_dir
        self._lock = DirectoryLock(self.model_dir, argument="model_dir").acquire() if (
            self.model_dir and jax_distribution.process_id() == 0) else None
        try:
            self._set_up(pipeline or make_pipeline(config.data), optimization, settings)
            self._resumed = self._restore()
            self.model_dir = jax_distribution.output_dir(self.placement, self.model_dir)
            if self._resumed is None:
                self._initialize()
        except BaseException:
            self.close()
            raise

    def _set_up(self, pipeline, optimization, settings):
        from training.loop_common import decayed_variables, outputs_logits

        self.pipeline, self.info = pipeline, pipeline.info
        self.monitor = report.monitor_of(self.info)  # the key of the best epoch
        self.batch = optimization.global_batch_size
        # Before the model is built: its variables are placed on the devices of the run.
        self.placement = jax_distribution.setup(settings, self.batch, keras.backend.backend())
        self.pipeline = jax_distribution.process_share(pipeline, self.placement)
        if self.placement.num_replicas > 1:
            self._log(self.placement.line())
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
            self.model = TrainingModel(
                built.inputs[0] if single else built.inputs, built.outputs, built.name, decayed,
                optimization.weight_decay if coupled else 0.0)
            self.optimizer = optimizers.build(optimization, self.schedule, self.policy,
                                              self.model, decayed)
            # Keras clips the unscaled gradients (inside a LossScaleOptimizer) by
            # min(1, clip / global norm), as training.optimizers.clip_by_global_norm does.
            getattr(self.optimizer, "inner_optimizer", self.optimizer).global_clipnorm = (
                optimization.clip_global_norm)
            self.optimizer.build(self.model.trainable_variables)
            self.model.head_scales = finetune_lib.head_scales(
                self.model, self.config.finetune.head_lr_multiplier)
            self.average = self.model.average = None if optimization.ema_decay is None else (
                keras_ema.OptimizerAverage(self.model, self.optimizer, optimization.ema_decay))
        self.logits = outputs_logits(self.model)  # classifier_activation=None
        loss, data_loss = training_loss(optimization, self.logits)
        self.model.compile(
            optimizer=self.optimizer, loss=loss,
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"), data_loss],
            jit_compile={"auto": "auto", "true": True, "false": False}[settings.jit_compile])
        self.results: Dict[str, Any] = {}
        self.history: List[Dict[str, Any]] = []
        self.initialization: Optional[Dict[str, Any]] = None
        self._stop = None  # fit's StopSignals
        self._latest, self._best = None, None

    def _restore(self) -> Optional[Dict[str, Any]]:
        """The state of the model directory's checkpoint, its weights, optimizer and average
        loaded; `None` for a new run (also one stopped before its first checkpoint). A
        directory of another run or of the tensorflow loop is refused."""
        if not (self.model_dir and os.path.exists(os.path.join(self.model_dir, "config.json"))):
            return None
        with open(os.path.join(self.model_dir, "config.json")) as file:
            before = json.load(file)
        try:  # a run from before a setting existed had its default
            before = ExperimentConfig.from_dict(before).to_dict()
        except (KeyError, TypeError, ValueError):
            pass  # not a config of this version: it differs below
        if json.loads(json.dumps(before)) != json.loads(json.dumps(self.config.to_dict())):
            raise ValueError(f"model_dir={self.model_dir!r} holds a run with other settings; "
                             "the Keras loop resumes only the same settings: use a new "
                             "model_dir.")
        state = keras_checkpoints.load(self.model_dir, self.model)
        if state is not None:  # the dropout and drop-path masks to come
            set_random_states(self.model, state.get("random"))
        if state is None and os.path.isdir(os.path.join(self.model_dir, "checkpoints")):
            raise ValueError(f"model_dir={self.model_dir!r} holds a run without a checkpoint "
                             f"of the Keras loop (keras_state.json); on {self.backend} use a "
                             "new model_dir.")
        if state is not None:
            state.setdefault("batch", 0)  # states of epoch checkpoints only had none
            if state["batch"]:  # an epoch to finish: its metrics' running sums go back in
                keras_callbacks.build_metrics(self.model)
            self.history, self._latest = state["history"], state["weights"]
            self._best = state.get("best")
            self.initialization = state.get("initialization")
        return state

    def _initialize(self) -> None:
        """A new run's first weights: those of `init_weights`, if any; the average starts
        from them."""
        source = self.config.finetune.init_weights
        if source:
            from training import initial_weights

            start = initial_weights.load(self.model, source, self.info.class_names)
            self.initialization = start.to_dict()
            self._log(start.line())
        if self.average is not None:
            self.average.reset()

    def close(self) -> None:
        """Releases the model directory's lock."""
        if self._lock is not None:
            self._lock.release()

    def evaluate(self, split: str = "test") -> Dict[str, float]:
        """Evaluates the current weights on every example of a split once (as
        `training.trainer.Trainer.evaluate`): `loss` (without label smoothing), `accuracy`,
        `error`, `examples` and, with more than five classes, `top5_accuracy`, `top5_error`.
        With `ema_decay`, of the averaged weights."""
        from training.loop_common import evaluation_metrics

        with keras_ema.averaged(self.average):
            sums = self._evaluation_sums(split)
        return evaluation_metrics(sums, self.info.num_classes, split, self.info.name)

    def _evaluation_sums(self, split):
        """Loss, correct, correct in the top 5 and count over a split."""
        sums = np.zeros(4)
        for images, labels in loaders.numpy_batches(self.pipeline.evaluation(split, self.batch)):
            crops = images.shape[1] if images.ndim == 5 else 1
            flat = images.reshape((-1, *images.shape[-3:]))
            outputs = ops.convert_to_numpy(ops.cast(self.model(flat, training=False),
                                                    "float32")).astype("float64")
            outputs = outputs.reshape((len(labels), crops, -1))
            # Ranked by scores that keep every distinction, as the TensorFlow loop does: the
            # log of the crops' mean probability where the logits are known.
            if self.logits:
                log_probs = outputs - np.logaddexp.reduce(outputs, axis=2, keepdims=True)
                scores = np.logaddexp.reduce(log_probs, axis=1) - np.log(crops)
                probs = np.exp(scores)
            else:
                probs = scores = outputs.mean(axis=1)
            labels = labels.reshape(-1).astype("int64")
            picked = np.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
            top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
            sums += (-np.log(np.clip(picked, 1e-7, 1.0)).sum(),
                     (scores.argmax(axis=1) == labels).sum(), (top5 == labels[:, None]).sum(),
                     len(labels))
        return sums

    def fit(self, callbacks: Optional[Sequence[keras.callbacks.Callback]] = None
            ) -> keras.callbacks.History:
        """Trains to the end (or resumes and finishes), evaluating every `eval_every_epochs`;
        `self.results` then holds the contents of `results.json`.

        Args:
            callbacks: Keras callbacks, given to each epoch's `model.fit`.

        Returns:
            A `keras.callbacks.History` with the rows of `history.csv` (one per epoch).

        Raises:
            TrainingDiverged: the running mean loss (with the coupled decay) became
                non-finite or exceeded `max_loss` (results.json then says "diverged").
            TrainingInterrupted: SIGINT or SIGTERM stopped it (after a checkpoint).
        """
        from training.interrupts import StopSignals, interruptible

        if self._lock is not None:
            self._lock.acquire()
        self._stop = StopSignals(self.model, self.placement.num_processes,
                                 self.placement.agreed_signal)
        try:
            with interruptible(self._stop.receive):
                self._fit(list(callbacks or []))
        finally:
            self.close()
        history = keras.callbacks.History()
        history.history = {key: [row.get(key) for row in self.history]
                           for key in self.history[0]} if self.history else {}
        return history

    def _fit(self, callbacks):
        from training.interrupts import TrainingInterrupted

        self._write_start()
        self._log(f"Training {self.model.name} on {self.info.name} with Keras' fit on "
                  f"{self.backend}: {self.epochs} epochs of {self.steps_per_epoch} steps, "
                  f"batch {self.batch}, {self.policy}.")
        for note in self.finetune_notes:
            self._log(note)
        at = self._resumed or {"epoch": 0, "batch": 0, "step": 0, "train_seconds": 0.0}
        if self._resumed:
            self._log(f"Resuming in epoch {at['epoch'] + 1} after batch {at['batch']} (step "
                      f"{at['step']})." if at["batch"] else
                      f"Resuming after epoch {at['epoch']} (step {at['step']}).")
        self.step, self.train_seconds = at["step"], at["train_seconds"]
        self._clock = time.time() - at.get("wall_seconds", 0.0)
        epoch, batch, metrics, seconds = (at["epoch"], at["batch"], at.get("metrics"),
                                          at.get("epoch_seconds", 0.0))
        status = None
        while status is None and epoch < self.epochs:
            status = self._train_epoch(epoch, batch, metrics, seconds, callbacks)
            epoch, batch, metrics, seconds = epoch + 1, 0, None, 0.0
        if status is None or (status == "stopped" and self.step >= self.total_steps):
            status = "completed"
        self.results = self._results(status, self.step, self.train_seconds,
                                     time.time() - self._clock)
        if status == "interrupted":
            self.results["message"] = report.interrupted_message(
                self._stop.signum, self.step, self.total_steps, self._latest_path())
        else:
            self._export()
        if self.model_dir:
            self._write("results.json", self.results)
        self._log(report.finished_line(status, self.results, self.model_dir))
        if status == "interrupted":
            raise TrainingInterrupted(self.results["message"], self._stop.signum)

    def _train_epoch(self, epoch, first_batch, metrics, seconds_before, callbacks):
        """Trains `epoch` from batch `first_batch` (with the running `metrics` of the batches
        before), then evaluates and checkpoints it. Returns how the run ends when it ends
        here (`"stopped"` or `"interrupted"`), else `None`."""
        from training.loop_common import epoch_logs

        settings = self.config.runtime
        epoch_steps = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        first_step = epoch * self.steps_per_epoch + first_batch
        watch = keras_callbacks.StepWatch(
            settings.max_loss, first_batch, first_step, epoch_steps,
            settings.checkpoint_every_steps if self.model_dir else 0,
            lambda done, step, seconds: self._save(epoch, done, step, seconds_before + seconds,
                                                   self.train_seconds + seconds),
            self._stop.stops, metrics)
        resumed = [keras_callbacks.RestoreTorchGenerators(self._resumed.get("random"))
                   ] if first_batch else []  # resumed within the epoch
        tick = time.time()
        if first_batch < epoch_steps and not self._stop.stops():
            data = loaders.fit_input(
                self.pipeline.train(epoch, self.batch, skip_batches=first_batch),
                self.info.num_classes)
            self.model.fit(data, initial_epoch=epoch, epochs=epoch + 1,
                           steps_per_epoch=epoch_steps - first_batch,
                           callbacks=[*resumed, watch, *callbacks],
                           shuffle=False,  # the pipeline shuffles, per epoch
                           verbose=1 if settings.verbose == 1 else 0)
        elif metrics is not None:  # the whole epoch was done before an interruption
            keras_callbacks.set_metric_state(self.model, metrics)
        seconds = time.time() - tick - watch.paused
        self.train_seconds += seconds
        seconds += seconds_before
        if watch.problem:
            self._diverged(epoch, watch.update, watch.problem, self.train_seconds)
        self.step = epoch * self.steps_per_epoch + watch.done
        if watch.done < epoch_steps or self._stop.stops():  # stopped within the epoch
            self._save(epoch, watch.done, self.step, seconds, self.train_seconds)
            return "interrupted" if self._stop.stops() else "stopped"
        logs = self.model.get_metrics_result()
        accuracy = float(logs["accuracy"])
        row = {"epoch": epoch + 1, "step": self.step, "loss": float(logs["data_loss"]),
               "accuracy": accuracy, "error": 1 - accuracy,
               "learning_rate": float(self.schedule(self.step - 1)),
               "images_per_second": self.batch * epoch_steps / seconds,
               "epoch_seconds": seconds}
        if (epoch + 1) % settings.eval_every_epochs == 0 or epoch + 1 == self.epochs:
            for split in (["validation"] if self.info.validation_examples else []) + (
                    ["test"] if settings.evaluate_test else []):
                row.update(epoch_logs(split, self.evaluate(split)))
        before = [r[self.monitor] for r in self.history if self.monitor in r]
        best = self.monitor in row and row[self.monitor] > max(before, default=-math.inf)
        self.history.append(row)
        self._log(report.epoch_line(epoch + 1, self.epochs, row, seconds, None))
        self._write_epoch(final=epoch + 1 == self.epochs)
        self._save(epoch + 1, 0, self.step, 0.0, self.train_seconds, best)
        if self._stop.stops():
            return "interrupted"
        return "stopped" if self.model.stop_training else None

    def _diverged(self, epoch, update, problem, train_seconds):
        """Writes results.json with status "diverged" and raises `TrainingDiverged`."""
        from training.interrupts import TrainingDiverged

        last = self._latest_path()
        kept = (f"the last checkpoint, {last}, is from before" if last else
                "it had saved no checkpoint")
        message = (f"Training diverged in update {update} of {self.total_steps} (epoch "
                   f"{epoch + 1}): {problem}. Stopped; {kept}. Lower the learning rate (now "
                   f"{self.config.optimization.learning_rate}) or check the data.")
        self._log(message)
        self.results = self._results("diverged", update, train_seconds,
                                     time.time() - self._clock)
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
            "frozen_parameters": self.freezing.frozen_parameters,
            "frozen_groups": list(self.freezing.frozen_groups),
            "initialization": self.initialization,
            "dataset": self.info.name, "class_names": list(self.info.class_names),
            "epochs": len(rows), "epochs_planned": self.epochs, "steps": step,
            "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "global_batch_size": self.batch, "dtype_policy": self.policy,
            **self.placement.results(),
            **report.optimizer_summary(self.config.optimization),
            "train_seconds": train_seconds, "wall_seconds": wall_seconds,
            "images_per_second": self.batch * step / train_seconds if train_seconds else None,
            "monitor": self.monitor, "best_epoch": best["epoch"] if best else None,
            **report.split_results(rows), "latest_checkpoint": self._latest_path(),
            "best_checkpoint": self._best_path(),
            "config": self.config.to_dict(),
        }

    def _save(self, epoch, batch, step, epoch_seconds, train_seconds, best=False):
        """Checkpoints the run at `batch` of `epoch` (0: its start) after `step` updates (and
        keeps a copy as the best epoch's when `best`); the running metrics of a part-done epoch
        go with it."""
        if not self.model_dir:
            return
        # A step with a finite loss can still leave weights that are not: saving them would
        # replace the last good checkpoint with one that no rerun recovers from.
        if not all(np.isfinite(ops.convert_to_numpy(v)).all() for v in self.model.weights):
            self._diverged(epoch - 1 if batch == 0 else epoch, step,
                           "the weights are no longer finite", train_seconds)
        self._latest = keras_checkpoints.save(self.model_dir, self.model, {
            "epoch": epoch, "batch": batch, "step": step,
            "metrics": keras_callbacks.metric_state(self.model) if batch else None,
            "epoch_seconds": epoch_seconds, "train_seconds": train_seconds,
            "wall_seconds": time.time() - self._clock, "initialization": self.initialization,
            "history": self.history, "best": self._best,
            "random": random_states(self.model)}, best)
        if best:
            self._best = keras_checkpoints.best_name(step)

    def _latest_path(self) -> Optional[str]:
        return os.path.join(self.model_dir, self._latest) if self._latest else None

    def _best_path(self) -> Optional[str]:
        return os.path.join(self.model_dir, self._best) if self._best else None

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
        with keras_ema.averaged(self.average):  # the exports have the averaged weights
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
