"""One training loop for every tf.distribute strategy, with the Keras experience.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so the
loop here is a custom one that works under all of them (its steps: `training.steps`). Users keep
what `fit` gives: a `keras.utils.Progbar` with images/s and ETA, Keras callbacks
(`on_train_begin`, `on_epoch_end` with logs, `model.stop_training`, ...) and a
`keras.callbacks.History`.

With `runtime.model_dir`, a run locks the directory (`training.dirlock`: a second run on it stops
at once) and writes, through `training.outputs.RunDirectory`, its checkpoints (model, optimizer,
the weight average of `ema_decay`, step, epoch, batch within the epoch and the
`training.run_state.RunState`), the best one by validation accuracy (test accuracy without a
validation split), TensorBoard scalars, `config.json`, `history.csv`, `results.json`
(`training.report`), `curves.png` and the exports of `runtime.export_format`
(`training.export`).

Rerunning the same command resumes from the newest checkpoint that reads cleanly: weights,
optimizer state, step, epoch and the data position (the pipeline's order is a pure function of
`(seed, epoch)`, so `skip_batches` reproduces it). A SIGKILL at any point leaves a model
directory that resumes (see `training.outputs`). Under multi-worker training only the chief
writes there; the other workers write their checkpoints to temporary directories, as
TensorFlow requires, and delete them.

A loss that is not finite or exceeds `runtime.max_loss` stops the run with `TrainingDiverged`
before anything is saved, so the last checkpoint is the last good state. SIGINT and SIGTERM
stop it after the current step with a checkpoint of that step and `TrainingInterrupted` (the
workers of a multi-worker run agree on the step after every step, so a signal that reaches only
some of them stops them all there); a failed write (a full disk) raises
`training.outputs.RunDirectoryError` and leaves the last good checkpoint the latest.
"""

import dataclasses
import math
import time
from typing import Any, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from training import ema as ema_lib
from training import export as export_lib
from training import finetune as finetune_lib
from training import initial_weights, interrupts, optimizers, report, run_state, schedules, serving
from training import outputs as outputs_lib
from training import runtime as runtime_lib
from training import steps as steps_lib
from training.config import ExperimentConfig
from training.dirlock import DirectoryLock
from training.interrupts import TrainingDiverged, TrainingInterrupted  # part of this API
from training.loop_common import random_states, set_random_states


@dataclasses.dataclass
class TrainResult:
    """What `run` returns.

    Args:
        history: `keras.callbacks.History`. Per-epoch logs of the whole run (resumed epochs
            included).
        results: dict. The contents of `results.json`.
        model: `keras.Model`. The trained model; with `ema_decay`, with the averaged weights
            (those evaluated and exported).
    """

    history: keras.callbacks.History
    results: Dict[str, Any]
    model: keras.Model


def make_pipeline(data_config):
    """The input pipeline of a `training.data.DataConfig`."""
    from training.data import Pipeline

    return Pipeline(data_config)


def build_optimizer(optimization, schedule, policy: str, model=None, decayed=()):
    """The optimizer of `optimization` over `schedule` (`training.optimizers.build`)."""
    return optimizers.build(optimization, schedule, policy, model, decayed)


class Trainer:
    """Trains an `ExperimentConfig` under its runtime.

    Args:
        config: `training.config.ExperimentConfig`.
        pipeline: optional `training.data.Pipeline` (or an object with its methods: `info`,
            `train`, `evaluation`, `steps_per_epoch`). Defaults to `Pipeline(config.data)`.
        strategy: optional `tf.distribute.Strategy` to use instead of `config.runtime.strategy`.

    Everything that can be wrong with the settings (an unknown model, a batch that the
    replicas do not divide, a missing data set, a model directory of another run) raises a
    `ValueError` here, before training starts.

    Example:

    ```python
    from training import config, trainer
    experiment = config.recipe("cifar10_resnet20", dataset="../shared/data/cifar10",
                               epochs=3, model_dir="runs/r20")
    history = trainer.Trainer(experiment).fit()
    ```
    """

    def __init__(self, config: ExperimentConfig, pipeline=None, strategy=None):
        if not isinstance(config, ExperimentConfig):
            raise ValueError(f"config must be an ExperimentConfig; got {config!r}.")
        # A pretrained source fixes the layer settings and the input normalisation.
        config, self.finetune_notes = finetune_lib.resolve(config)
        self.config = config
        optimization, settings = config.optimization, config.runtime
        self.runtime = runtime_lib.setup(settings, optimization.global_batch_size, strategy)
        self.model_dir = settings.model_dir
        # Lock the model directory first: a second run on it stops here, having written nothing.
        self._lock = DirectoryLock(self.model_dir, argument="model_dir").acquire() if (
            self.model_dir and self.runtime.is_chief) else None
        try:
            self._set_up(pipeline)
        except BaseException:
            self.close()
            raise

    def _set_up(self, pipeline):
        config = self.config
        optimization, settings = config.optimization, config.runtime
        self.pipeline = pipeline if pipeline is not None else make_pipeline(config.data)
        self.info = self.pipeline.info
        batch = optimization.global_batch_size
        self.steps_per_epoch = int(self.pipeline.steps_per_epoch(batch))
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"batch_size={batch} is larger than the {self.info.train_examples} training "
                f"images of {self.info.name}; use a smaller batch."
            )
        if not settings.evaluate_test and not self.info.validation_examples:
            raise ValueError(
                "evaluate_test=False needs a validation split to evaluate (validation_images > 0)."
            )
        if settings.save_model and self.model_dir:  # not after hours of training
            export_lib.check_available(settings.export_format)
        self.total_steps = optimization.steps(self.steps_per_epoch)
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = schedules.build(optimization, self.steps_per_epoch)
        self.unreached_boundaries = optimization.unreached_boundaries(self.steps_per_epoch)
        self.results: Dict[str, Any] = {}

        runtime_lib.seed_everything(settings.seed, settings.deterministic)
        with runtime_lib.policy_scope(self.runtime.dtype_policy), self.runtime.strategy.scope():
            self.model = config.model.build(self.info.num_classes, self.info.image_shape)
            self.architecture = config.model.architecture()
            # Before the optimizer is built: it then tracks only the trainable weights.
            self.freezing = finetune_lib.freeze(self.model, config.finetune)
            self._decayed = steps_lib.decayed_variables(self.model,
                                                        optimization.decay_bn_and_bias)
            self.optimizer = build_optimizer(optimization, self.schedule,
                                             self.runtime.dtype_policy, self.model, self._decayed)
            self.optimizer.build(self.model.trainable_variables)
        self.average = ema_lib.for_decay(self.model, optimization.ema_decay, self.runtime.strategy)
        self.model.stop_training = False
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="batch_in_epoch")
        # The run's `run_state.RunState` as JSON, so that it travels in the checkpoints.
        self._state = tf.Variable("{}", dtype=tf.string, trainable=False, name="state")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch, state=self._state,
            **ema_lib.checkpoint_entries(self.average),
        )
        self._steps = steps_lib.StepFunctions(
            self.model, self.optimizer, self.runtime, optimization, self._decayed,
            finetune_lib.head_scales(self.model, config.finetune.head_lr_multiplier),
            counters=(self.step, self.batch_in_epoch), average=self.average)
        self.outputs = outputs_lib.RunDirectory(
            self.model_dir, self.runtime, self.checkpoint, settings.keep_checkpoints,
            title=f"{config.name}: {self.model.name} on {self.info.name}", lock=self._lock,
        ) if self.model_dir else None
        self._started = False
        self._resumed_from = self._restore()
        if self._resumed_from is None and config.finetune.init_weights:
            with self.runtime.strategy.scope():
                start = initial_weights.load(self.model, config.finetune.init_weights,
                                             self.info.class_names)
            state = self._run_state()
            state.initialization = start.to_dict()
            self._state.assign(state.to_json())
        if self._resumed_from is None and self.average is not None:
            self.average.reset()  # from the first weights (init_weights' included)

    def close(self) -> None:
        """Releases the model directory (its lock); `fit()` takes it again if needed."""
        if self._lock is not None:
            self._lock.release()

    @property
    def monitor(self) -> str:
        """The log key that picks the best checkpoint: validation accuracy, else test."""
        return report.monitor_of(self.info)

    def _regularization(self):
        """Weight decay and model losses of one replica's step."""
        return self._steps.regularization()

    def sync_replicas(self) -> None:
        """Makes every replica's copy of the non-trainable weights equal (their mean)."""
        self._steps.sync()

    def evaluate(self, split: str = "test") -> Dict[str, float]:
        """Evaluates the current weights on a split, every example once.

        Args:
            split: str. `"validation"` or `"test"`. With the data's `eval_crops=10`, the
                probabilities of the ten crops are averaged.

        Returns:
            A dict with `loss` (cross-entropy without label smoothing, of the probabilities
            clipped at 1e-7 as Keras' is), `accuracy`, `error`, `examples` and, with more than
            five classes, `top5_accuracy` and `top5_error`. With `ema_decay`, of the averaged
            weights.
        """
        self.sync_replicas()
        with self.averaged_weights():
            return self._steps.evaluate_split(self.pipeline, split)

    def averaged_weights(self):
        """A context within which the model has the averaged weights (with `ema_decay`; else
        its own): `training.ema.averaged`."""
        return ema_lib.averaged(self.average, self.sync_replicas)

    def restore_weights(self, path: str) -> None:
        """Loads the model's weights (not the optimizer) from a checkpoint path; with
        `ema_decay`, the averaged weights, which the run evaluated and exported."""
        ema_lib.restore_weights(self.model, self.average, path)

    # ----------------------------------------------------------------------------------------
    # Resuming.

    def _run_state(self) -> run_state.RunState:
        return run_state.RunState.from_json(self._state.numpy().decode())

    def _restore(self) -> Optional[str]:
        """Resumes from the model directory's newest readable checkpoint, after checking that it
        holds this run, and returns its path (`None` for a new run); `_state` holds the run's
        state either way. Reads only."""
        batch = self.runtime.global_batch_size
        self._state.assign(run_state.RunState(batch, self.steps_per_epoch).to_json())
        if not self.outputs:
            return None
        latest, self._previous_config = self.outputs.resume(self.config.to_dict())
        if latest is not None:
            state = self._run_state()
            state.check_resumable(self.model_dir, batch, self.steps_per_epoch)
            set_random_states(self.model, state.random)
        return latest

    def _start(self):
        """Writes the run's config (and, for a new run, the step-0 checkpoint) and says whether
        it resumes; once per `Trainer`."""
        if self._started:
            return
        self._started = True
        if self._resumed_from is None:
            if self.outputs:
                self.outputs.write_config(self.config)
                self.outputs.save(0)
            return
        for line in report.resume_lines(self._previous_config, self.config, self._resumed_from,
                                        self.epoch, self.batch_in_epoch, self.step):
            self._log(line)
        self.outputs.write_config(self.config)  # a resumed run has a model directory

    # ----------------------------------------------------------------------------------------
    # Training.

    def fit(self, callbacks: Optional[Sequence[keras.callbacks.Callback]] = None
            ) -> keras.callbacks.History:
        """Trains to the end (or resumes and finishes), evaluating every `eval_every_epochs`.

        Args:
            callbacks: Keras callbacks. They get `on_train_begin/end`, `on_epoch_begin/end`
                (with the epoch's logs: `loss`, `accuracy`, `error`, `learning_rate`,
                `val_*` and `test_*` (loss, accuracy, error, examples, top-5 with more than
                five classes) where evaluated, `images_per_second`) and
                `on_train_batch_begin/end` (running `loss` and `accuracy`); setting
                `model.stop_training` ends the run after the batch.

        Returns:
            A `keras.callbacks.History` of every epoch of the run, resumed epochs included.
            `self.results` holds the contents of `results.json`.

        Raises:
            TrainingDiverged: the loss became non-finite or exceeded `max_loss`.
            TrainingInterrupted: SIGINT or SIGTERM stopped it (after a checkpoint).
        """
        if self._lock is not None:
            self._lock.acquire()  # released by the previous fit(), or by close()
        self._stop = interrupts.StopSignals(self.model, self.runtime.num_workers,
                                            self._steps.agreed_signal)
        try:
            with interrupts.interruptible(self._stop.receive), interrupts.named_input_errors():
                return self._fit(callbacks)
        finally:
            if self.outputs:
                self.outputs.close()
            self.close()

    def _fit(self, callbacks):
        self._start()
        state = self._run_state()
        state.start(int(self.epoch.numpy()), int(self.step.numpy()),
                    int(self.batch_in_epoch.numpy()))
        history = keras.callbacks.History()
        callback_list = keras.callbacks.CallbackList(
            list(callbacks or []) + [history], model=self.model, epochs=self.epochs,
            steps=self.steps_per_epoch, verbose=self.config.runtime.verbose,
        )
        self.model.stop_training = False
        for line in report.start_lines(self, state, resumed=bool(self._resumed_from)):
            self._log(line)
        callback_list.on_train_begin()
        state.replay(history)  # the epochs of earlier sessions
        status = None
        try:
            while status is None and state.epoch < self.epochs and state.step < self.total_steps:
                status = self._train_epoch(state, callback_list)
        finally:
            if self.outputs:
                self.outputs.flush()
        callback_list.on_train_end(
            {key: values[-1] for key, values in history.history.items()})
        self._finish(state, status or "completed")
        return history

    def _train_epoch(self, state, callbacks) -> Optional[str]:
        """Trains the rest of `state.epoch`, then evaluates and checkpoints it. Returns how the
        run ends when it ends here (`"stopped"`, `"interrupted"`, or `"completed"` when a
        callback stops it after its last epoch), else `None`."""
        epoch, epoch_steps = state.epoch, min(
            self.steps_per_epoch, self.total_steps - state.epoch * self.steps_per_epoch)
        sums = state.begin_epoch()
        callbacks.on_epoch_begin(epoch)
        if state.skip:
            self._log(f"Epoch {epoch + 1}: continuing after batch {state.skip}.")
        done = self._train_steps(state, sums, epoch_steps, callbacks)
        if done < epoch_steps or self._stop.stops():  # stopped within the epoch
            state.epoch_sums = sums
            state.stamp_wall()
            self._save(state)
            return "interrupted" if self._stop.stops() else "stopped"
        logs = self._end_epoch(state, sums)
        callbacks.on_epoch_end(epoch, logs)
        self._log(report.epoch_line(state.epoch, self.epochs, logs, sums.seconds,
                                    state.seconds_left(self.total_steps)))
        if not (self.model.stop_training or self._stop.stops()):
            return None
        if state.epoch >= self.epochs:
            return "completed"
        return "interrupted" if self._stop.stops() else "stopped"

    def _train_steps(self, state, sums, epoch_steps, callbacks) -> int:
        """The updates of `state.epoch` from batch `state.skip` until its end or a stop;
        returns the number of its batches done."""
        settings, rt, skip = self.config.runtime, self.runtime, state.skip
        progress = report.Progress(self, state.epoch, epoch_steps - skip)
        epoch, pipeline = state.epoch, self.pipeline
        dataset = rt.strategy.distribute_datasets_from_function(
            lambda context: pipeline.train(epoch, rt.global_batch_size, input_context=context,
                                           skip_batches=skip))
        tick, done = time.time(), skip
        iterator = iter(dataset)
        for batch in range(skip, epoch_steps):
            callbacks.on_train_batch_begin(batch)
            loss, regularization, correct, count = (
                float(value) for value in self._steps.train(iterator).numpy())
            state.step += 1
            problem = report.loss_problem(loss + regularization, settings.max_loss)
            if problem:
                self._diverged(state, problem, update=state.step)
            done = batch + 1
            logs = sums.add(loss, correct, count)
            callbacks.on_train_batch_end(batch, logs)
            progress.update(done - skip, state.step, loss, regularization, logs, sums.count,
                            sums.seconds + time.time() - tick)
            if self.model.stop_training or self._stop.stops():
                break
            if (settings.checkpoint_every_steps and done < epoch_steps
                    and state.step % settings.checkpoint_every_steps == 0):
                pause = time.time()
                self._save(state.snapshot(sums, pause - tick, rt.global_batch_size * (done - skip)))
                tick += time.time() - pause  # saving is not training time
        seconds = time.time() - tick
        sums.seconds += seconds
        state.add_training(seconds, rt.global_batch_size * (done - skip))
        return done

    def _end_epoch(self, state, sums) -> Dict[str, float]:
        """Evaluates a finished epoch (every `eval_every_epochs` and at the end), records and
        checkpoints it; returns its logs."""
        step, settings = state.step, self.config.runtime
        logs = sums.logs(float(self.schedule(step - 1)))
        if (state.epoch + 1) % settings.eval_every_epochs == 0 or state.epoch + 1 == self.epochs:
            splits = (["validation"] if self.info.validation_examples else []) + (
                ["test"] if settings.evaluate_test else [])
            for split in splits:
                logs.update(self._evaluate_split(split, step))
        if self.outputs:
            self.outputs.scalars("train", step, {
                "epoch_" + key: logs[key] for key in ("loss", "accuracy", "error")})
        improved = state.end_epoch({"epoch": state.epoch + 1, "step": step, **logs}, self.monitor)
        self.epoch.assign(state.epoch)
        self.batch_in_epoch.assign(0)
        state.stamp_wall()
        self._save(state, best=improved)
        if self.outputs:
            self.outputs.write_epoch(state.history, step)
            self.outputs.write_results(report.results(self, state, "running"))
        return logs

    def _evaluate_split(self, split, step) -> Dict[str, float]:
        """`evaluate(split)` as epoch logs (`val_*` or `test_*`), also sent to TensorBoard."""
        metrics = self.evaluate(split)
        if self.outputs:
            self.outputs.scalars(split, step, {
                "epoch_" + key: metrics[key] for key in ("loss", "accuracy", "error")})
        return steps_lib.epoch_logs(split, metrics)

    def _finish(self, state, status):
        """Writes the final state, results and exports, and says how the run ended."""
        settings = self.config.runtime
        state.stamp_wall()
        self._state.assign(state.to_json())
        self.results = report.results(self, state, status)
        if status == "interrupted":
            self.results["message"] = report.interrupted_message(
                self._stop.signum, state.step, self.total_steps,
                self.outputs.latest_checkpoint() if self.outputs else None)
        if self.outputs:
            self.outputs.write_epoch(state.history, state.step, final=True)
            if settings.save_model and status != "interrupted":
                self.sync_replicas()
                with self.averaged_weights():  # the exports have the averaged weights
                    network = export_lib.float32_copy(self.model, self.config.model, self.info)
                self.results["exports"] = self.outputs.save_model(
                    network, serving.Preprocessing.from_pipeline(self.pipeline),
                    self.info.class_names, settings.export_format)
            self.outputs.write_results(self.results)
            self.outputs.close()
        self._log(report.finished_line(status, self.results, self.model_dir))
        if status == "interrupted":
            raise TrainingInterrupted(self.results["message"], self._stop.signum)

    def _log(self, message):
        if self.config.runtime.verbose and self.runtime.is_chief:
            print(message, flush=True)

    def _save(self, state, best=False):
        if not self.outputs:
            return
        self.sync_replicas()
        if not all(np.isfinite(v.numpy()).all() for v in self.model.weights):
            self._diverged(state, "the weights are no longer finite",
                           update=int(self.step.numpy()))
        state.random = random_states(self.model)  # the masks to come
        self._state.assign(state.to_json())
        self.outputs.save(int(self.step.numpy()), best=best)

    def _diverged(self, state, what, update):
        last = self.outputs.latest_checkpoint() if self.outputs else None
        message = report.diverged_message(self, update, what, last)
        self._log(message)
        if self.outputs:
            self.outputs.write_results(report.results(self, state, "diverged", message))
        raise TrainingDiverged(message)


def run(config: ExperimentConfig, pipeline=None, callbacks=None, strategy=None) -> TrainResult:
    """Trains (or resumes) an experiment: `Trainer(config, pipeline, strategy).fit(callbacks)`.

    Args:
        config: `training.config.ExperimentConfig`.
        pipeline: optional input pipeline; defaults to `training.data.Pipeline(config.data)`.
        callbacks: optional Keras callbacks.
        strategy: optional `tf.distribute.Strategy` that replaces `config.runtime.strategy`.

    Returns:
        A `TrainResult` with the history, the results (as in `results.json`) and the model.
    """
    trainer = Trainer(config, pipeline=pipeline, strategy=strategy)
    history = trainer.fit(callbacks)
    if trainer.average is not None:
        trainer.sync_replicas()
        trainer.average.load_into_model()
    return TrainResult(history=history, results=trainer.results, model=trainer.model)
