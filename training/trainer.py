"""One training loop for every tf.distribute strategy, with the Keras experience.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so the
loop here is a custom one that works under all of them: `strategy.run` of the train step over
`strategy.distribute_datasets_from_function`, the loss summed per replica and divided by the
global batch, gradients all-reduced (summed) by `optimizer.apply`. Users keep what `fit` gives:
a `keras.utils.Progbar` with images/s and ETA, Keras callbacks (`on_train_begin`, `on_epoch_end`
with logs, `model.stop_training`, ...) and a `keras.callbacks.History`.

With `runtime.model_dir`, a run locks the directory (`training.dirlock`: a second run on it stops
at once) and writes, through `training.outputs.RunDirectory`:

- `checkpoints/`: the latest `keep_checkpoints` `tf.train.Checkpoint`s of the model, optimizer,
  step, epoch, batch within the epoch and the run's history; `best/`: the best one by
  validation accuracy (test accuracy without a validation split).
- `logs/{train,validation,test}/`: TensorBoard scalars (`tf.summary`).
- `config.json`, `history.csv`, `results.json` (every epoch), `curves.png` (loss and error,
  train and test, against iterations, like the papers' figures; redrawn at most every 30 s and
  at the end), and the exports of `runtime.export_format` with `class_names.json`
  (`training.export`: raw images in, probabilities out; `model.keras` and `saved_model/` by
  default).

Rerunning the same command resumes from the newest checkpoint that reads cleanly: weights,
optimizer state, step, epoch and the data position (the pipeline's order is a pure function of
`(seed, epoch)`, so `skip_batches` reproduces it). A SIGKILL at any point leaves a model
directory that resumes (see `training.outputs`). Under multi-worker training only the chief
writes there; the other workers write their checkpoints to temporary directories, as
TensorFlow requires, and delete them.

A loss that is not finite or exceeds `runtime.max_loss` stops the run with `TrainingDiverged`
before anything is saved, so the last checkpoint is the last good state. SIGINT and SIGTERM
(single-worker runs) stop it after the current step with a checkpoint of that step and
`TrainingInterrupted`; a failed write (a full disk) raises `training.outputs.RunDirectoryError`
and leaves the last good checkpoint the latest.
"""

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from training import export as export_lib
from training import finetune as finetune_lib
from training import initial_weights, schedules, serving
from training import outputs as outputs_lib
from training import runtime as runtime_lib
from training.config import ExperimentConfig
from training.dirlock import DirectoryLock
from training.images import CorruptImageError

_SUM = tf.distribute.ReduceOp.SUM
_TRAIN_VALUES = ("loss", "regularization", "correct", "count")
_EVAL_VALUES = ("loss", "correct", "correct_top5", "count")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN, infinite or larger than `RuntimeConfig.max_loss`."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run after saving a checkpoint of its last step.

    Attributes:
        signum: int. The signal.
        exit_code: int. What a shell reports for a process the signal ended (130, 143).
    """

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


@contextlib.contextmanager
def _interruptible(handler, enabled=True):
    """Routes the first SIGINT / SIGTERM to `handler(signum)` and restores the previous
    handlers on exit; a repeated signal gets the previous handler (Ctrl-C twice stops at
    once). Signal handlers can only be set from the main thread; elsewhere this does nothing."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum, frame):
        signal.signal(signum, previous[signum])
        handler(signum)

    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def _named_input_errors():
    """A corrupt image met while reading stops the input with a long TensorFlow error that
    carries a `training.images.CorruptImageError`; raise that one (it names the files)."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        corrupt = CorruptImageError.from_op_error(error)
        if corrupt is None:
            raise
        raise corrupt from None


@dataclasses.dataclass
class TrainResult:
    """What `run` returns.

    Args:
        history: `keras.callbacks.History`. Per-epoch logs of the whole run (resumed epochs
            included).
        results: dict. The contents of `results.json`.
        model: `keras.Model`. The trained model.
    """

    history: keras.callbacks.History
    results: Dict[str, Any]
    model: keras.Model


def make_pipeline(data_config):
    """The input pipeline of a `training.data.DataConfig`."""
    from training.data import Pipeline

    return Pipeline(data_config)


def build_optimizer(optimization, schedule, policy: str):
    """SGD with momentum over `schedule`, with loss scaling under `mixed_float16`."""
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=optimization.momentum, nesterov=optimization.nesterov
    )
    return runtime_lib.wrap_optimizer(optimizer, policy)


def decayed_variables(model: keras.Model, decay_bn_and_bias: bool) -> List[keras.Variable]:
    """The weights that weight decay applies to: every kernel, and with `decay_bn_and_bias`
    also every batch-norm scale and offset and every bias."""
    return [v for v in model.trainable_variables
            if decay_bn_and_bias or v.name.split("/")[-1].endswith("kernel")]


def _sparse_labels(labels):
    if labels.shape.rank is not None and labels.shape.rank > 1:
        return tf.argmax(labels, axis=-1, output_type=tf.int64)
    return tf.cast(labels, tf.int64)


def _logits_of(outputs, from_logits):
    """The logits behind the model's outputs, or None when only probabilities are known."""
    if from_logits:
        return outputs
    logits = getattr(outputs, "_keras_logits", None)
    if logits is None and getattr(getattr(outputs, "op", None), "type", None) == "Softmax":
        logits = outputs.op.inputs[0]
    return None if logits is None else tf.cast(logits, tf.float32)


def _log_probabilities(outputs, from_logits):
    logits = _logits_of(outputs, from_logits)
    if logits is not None:
        return tf.nn.log_softmax(logits, axis=-1)
    return tf.math.log(tf.clip_by_value(tf.cast(outputs, tf.float32), 1e-7, 1.0))


def _cross_entropy(labels, log_probs, label_smoothing):
    """Per-example cross-entropy of sparse labels, with label smoothing."""
    classes = tf.shape(log_probs)[-1]
    target = tf.one_hot(labels, classes, dtype=tf.float32)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / tf.cast(classes, tf.float32)
    return -tf.reduce_sum(target * log_probs, axis=-1)


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
        config, self._finetune_notes = finetune_lib.resolve(config)
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
        self.unreached_boundaries = [
            b for b in optimization.boundaries(self.steps_per_epoch) if b >= self.total_steps
        ] if optimization.schedule == "step" else []
        self.results: Dict[str, Any] = {}

        runtime_lib.seed_everything(settings.seed, settings.deterministic)
        with runtime_lib.policy_scope(self.runtime.dtype_policy), self.runtime.strategy.scope():
            self.model = config.model.build(self.info.num_classes, self.info.image_shape)
            self.architecture = config.model.architecture()
            # Before the optimizer is built: it then tracks only the trainable weights.
            self.freezing = finetune_lib.freeze(self.model, config.finetune)
            self.optimizer = build_optimizer(optimization, self.schedule,
                                             self.runtime.dtype_policy)
            self.optimizer.build(self.model.trainable_variables)
        self.model.stop_training = False
        self._from_logits = getattr(self.model.layers[-1], "activation", None) in (
            None, keras.activations.linear)
        self._decayed = decayed_variables(self.model, optimization.decay_bn_and_bias)
        self._head_scales = finetune_lib.head_scales(self.model,
                                                     config.finetune.head_lr_multiplier)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="batch_in_epoch")
        self._state = tf.Variable("{}", dtype=tf.string, trainable=False, name="state")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch, state=self._state,
        )
        self._train_function = self._make_train_function()
        self._eval_function = self._make_eval_function()
        self._sync_function = self._make_sync_function()
        self._outputs = outputs_lib.RunDirectory(
            self.model_dir, self.runtime, self.checkpoint, settings.keep_checkpoints,
            title=f"{config.name}: {self.model.name} on {self.info.name}", lock=self._lock,
        ) if self.model_dir else None
        self._started = False
        self._resumed_from = self._restore()
        if self._resumed_from is None and config.finetune.init_weights:
            with self.runtime.strategy.scope():
                start = initial_weights.load(self.model, config.finetune.init_weights,
                                             self.info.class_names)
            state = json.loads(self._state.numpy().decode())
            self._state.assign(json.dumps(dict(state, initialization=start.to_dict())))

    def close(self) -> None:
        """Releases the model directory (its lock); `fit()` takes it again if needed."""
        if self._lock is not None:
            self._lock.release()

    # ----------------------------------------------------------------------------------------
    # Steps.

    def _regularization(self):
        total = tf.constant(0.0, tf.float32)
        weight_decay = self.config.optimization.weight_decay
        if weight_decay and self._decayed:
            total += 0.5 * weight_decay * tf.add_n(
                [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in self._decayed])
        if self.model.losses:
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.model.losses])
        return total / float(self.runtime.num_replicas)

    def _replica_train_step(self, images, labels):
        labels = _sparse_labels(labels)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            log_probs = _log_probabilities(outputs, self._from_logits)
            per_example = _cross_entropy(labels, log_probs,
                                         self.config.optimization.label_smoothing)
            data_loss = tf.reduce_sum(per_example) / float(self.runtime.global_batch_size)
            regularization = self._regularization()
            scaled = self.optimizer.scale_loss(data_loss + regularization)
        gradients = finetune_lib.scale_gradients(tape.gradient(scaled, variables),
                                                 self._head_scales)
        self.optimizer.apply(gradients, variables)
        correct = tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int64), labels)
        return {
            "loss": data_loss,
            "regularization": regularization,
            "correct": tf.reduce_sum(tf.cast(correct, tf.float32)),
            "count": tf.cast(tf.shape(labels)[0], tf.float32),
        }

    def _replica_eval_step(self, images, labels):
        labels = _sparse_labels(labels)
        count = tf.shape(labels)[0]
        # A replica can get an empty final batch; the model needs at least one example, so pad
        # one (masked out below).
        pad = tf.maximum(1 - count, 0)
        images = tf.pad(images, tf.concat(
            [[[0, pad]], tf.zeros([tf.rank(images) - 1, 2], tf.int32)], axis=0))
        labels = tf.pad(labels, [[0, pad]])
        mask = tf.cast(tf.range(count + pad) < count, tf.float32)
        crops = images.shape.rank == 5
        if crops:  # [batch, crops, H, W, C]: average the probabilities of the crops
            shape = tf.shape(images)
            images = tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0))
        outputs = self.model(images, training=False)
        log_probs = _log_probabilities(outputs, self._from_logits)
        if crops:
            probs = tf.reduce_mean(tf.reshape(
                tf.exp(log_probs), [shape[0], shape[1], tf.shape(log_probs)[-1]]), axis=1)
            log_probs = tf.math.log(tf.clip_by_value(probs, 1e-7, 1.0))
        correct = tf.equal(tf.argmax(log_probs, axis=-1, output_type=tf.int64), labels)
        top5 = tf.math.in_top_k(labels, log_probs, k=min(5, self.info.num_classes))
        return {
            "loss": tf.reduce_sum(mask * _cross_entropy(labels, log_probs, 0.0)),
            "correct": tf.reduce_sum(mask * tf.cast(correct, tf.float32)),
            "correct_top5": tf.reduce_sum(mask * tf.cast(top5, tf.float32)),
            "count": tf.cast(count, tf.float32),
        }

    def _replica_function(self, replica_fn):
        if self.runtime.jit_compile and self.runtime.strategy_name != "tpu":
            return tf.function(replica_fn, jit_compile=True, reduce_retracing=True)
        return replica_fn

    def _make_train_function(self):
        """One update: `[loss, regularization, correct, count]` summed over the replicas.

        The batch is taken from the distributed iterator inside the function, as `model.fit`
        does: pulling it eagerly between steps made CPU training up to 2x slower, and erratically
        so (bench/trainer_overhead). The step counters advance in the same call, and the four
        values come back as one tensor, so each step costs a single call and a single read.
        """
        strategy, replica_fn = self.runtime.strategy, self._replica_function(
            self._replica_train_step)

        @tf.function
        def train_step(iterator):
            images, labels = next(iterator)
            per_replica = strategy.run(replica_fn, args=(images, labels))
            self.step.assign_add(1)
            self.batch_in_epoch.assign_add(1)
            return tf.stack([strategy.reduce(_SUM, per_replica[key], axis=None)
                             for key in _TRAIN_VALUES])

        return train_step

    def _make_eval_function(self):
        """The sums of `_EVAL_VALUES` over a whole distributed dataset, in one call: the loop
        runs inside the function, for the reason given in `_make_train_function`."""
        strategy, replica_fn = self.runtime.strategy, self._replica_function(
            self._replica_eval_step)

        @tf.function
        def evaluate_dataset(dataset):
            totals = tf.zeros([len(_EVAL_VALUES)])
            for images, labels in dataset:
                per_replica = strategy.run(replica_fn, args=(images, labels))
                totals += tf.stack([strategy.reduce(_SUM, per_replica[key], axis=None)
                                    for key in _EVAL_VALUES])
            return totals

        return evaluate_dataset

    def _make_sync_function(self):
        """Averages the non-trainable weights (batch-norm moving statistics) over replicas.

        Keras 3 creates them with `aggregation="none"`, so under a strategy each replica's copy
        tracks its own batches, and the workers of a multi-worker run end with different
        statistics. Their moving averages are linear in the batch statistics, so averaging the
        copies whenever they are read (evaluation, checkpoints, export) gives exactly the moving
        average of the replica-averaged statistics, as tf.keras' `aggregation=MEAN` did.
        """
        variables = self.model.non_trainable_variables
        if self.runtime.num_replicas == 1 or not variables:
            return None
        strategy = self.runtime.strategy

        def replica_sync():
            context = tf.distribute.get_replica_context()
            # tf.identity: reading the variables directly fails under MultiWorkerMirroredStrategy
            # ("destinations can not be empty").
            values = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                        [tf.identity(v.value) for v in variables])
            for variable, value in zip(variables, values):
                variable.assign(value)

        @tf.function
        def sync():
            strategy.run(replica_sync)

        return sync

    def sync_replicas(self) -> None:
        """Makes every replica's copy of the non-trainable weights equal (their mean)."""
        if self._sync_function is not None:
            self._sync_function()

    # ----------------------------------------------------------------------------------------
    # Evaluation.

    def evaluate(self, split: str = "test") -> Dict[str, float]:
        """Evaluates the current weights on a split, every example once.

        Args:
            split: str. `"validation"` or `"test"`. With the data's `eval_crops=10`, the
                probabilities of the ten crops are averaged.

        Returns:
            A dict with `loss` (cross-entropy without label smoothing), `accuracy`, `error`,
            `examples` and, with more than five classes, `top5_accuracy` and `top5_error`.
        """
        batch = self.runtime.global_batch_size
        self.sync_replicas()
        dataset = self.runtime.strategy.distribute_datasets_from_function(
            lambda context: self.pipeline.evaluation(split, batch, context))
        with warnings.catch_warnings(), _named_input_errors():
            # Tracing a loop over a distributed dataset reads its tf.data options in graph mode,
            # which TensorFlow warns about; the options are not used.
            warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data")
            sums = self._eval_function(dataset).numpy()
        totals = dict(zip(_EVAL_VALUES, (float(value) for value in sums)))
        count = totals["count"]
        if count == 0:
            raise ValueError(f"The {split} split of {self.info.name} has no examples.")
        accuracy = totals["correct"] / count
        metrics = {"loss": totals["loss"] / count, "accuracy": accuracy, "error": 1.0 - accuracy,
                   "examples": int(count)}
        if self.info.num_classes > 5:
            top5 = totals["correct_top5"] / count
            metrics.update(top5_accuracy=top5, top5_error=1.0 - top5)
        return metrics

    def restore_weights(self, path: str) -> None:
        """Loads the model's weights (not the optimizer) from a checkpoint path."""
        tf.train.Checkpoint(model=self.model).restore(path).expect_partial()

    # ----------------------------------------------------------------------------------------
    # Training.

    def _log(self, message):
        if self.config.runtime.verbose and self.runtime.is_chief:
            print(message, flush=True)

    def _describe(self):
        rt, info = self.runtime, self.info
        split = f"{info.train_examples} train"
        if info.validation_examples:
            split += f" / {info.validation_examples} validation"
        split += f" / {info.test_examples} test"
        replicas = (f"{rt.num_replicas} replicas x {rt.per_replica_batch_size}"
                    if rt.num_replicas > 1 else "1 replica")
        return (
            f"Training {self.model.name} ({_architecture_line(self.architecture)}; "
            f"{self.model.count_params() / 1e6:.2f}M parameters) on {info.name} ({split} "
            f"images): {self.epochs} epochs of {self.steps_per_epoch} steps ({self.total_steps} "
            "steps), global batch "
            f"{rt.global_batch_size} = {replicas} ({rt.strategy_name} on {rt.device_type}, "
            f"{rt.num_workers} worker{'s' if rt.num_workers > 1 else ''}, XLA "
            f"{'on' if rt.jit_compile else 'off'}, {rt.dtype_policy})."
        )

    def _finetune_lines(self, state):
        """The log lines of the fine-tuning settings: notes, where the weights came from (or
        that a resumed run ignores `init_weights`) and what is frozen."""
        settings = self.config.finetune
        lines = list(self._finetune_notes)
        start = state.get("initialization")
        if self._resumed_from and settings.init_weights:
            lines.append(f"init_weights={settings.init_weights!r} is ignored: the run resumes "
                         "from its own checkpoint.")
        elif start:
            lines.append(initial_weights.Initialization(**start).line())
        if self.freezing.frozen_parameters:
            lines.append(self.freezing.line())
        return lines

    def _monitor(self):
        return "val_accuracy" if self.info.validation_examples else "test_accuracy"

    def _restore(self) -> Optional[str]:
        """Resumes from the model directory's newest readable checkpoint, after checking that it
        holds this run, and returns its path (`None` for a new run); `_state` holds the run's
        state either way. Reads only."""
        fresh = {"history": [], "epoch_sums": None, "best": None, "best_epoch": None,
                 "train_seconds": 0.0, "wall_seconds": 0.0, "images": 0,
                 "global_batch_size": self.runtime.global_batch_size,
                 "steps_per_epoch": self.steps_per_epoch}
        self._state.assign(json.dumps(fresh))
        if not self._outputs:
            return None
        self._previous_config = self._outputs.read_config()
        self._check_same_run(self._previous_config)
        latest = self._outputs.restore()
        if latest is None:
            return None
        state = json.loads(self._state.numpy().decode())
        for key, now in (("global_batch_size", self.runtime.global_batch_size),
                         ("steps_per_epoch", self.steps_per_epoch)):
            if state.get(key) != now:
                raise ValueError(
                    f"model_dir={self.model_dir!r} holds a run with {key}={state.get(key)}, but "
                    f"this run has {key}={now}; resume with the same batch and data settings or "
                    "use a new model_dir."
                )
        return latest

    def _check_same_run(self, before):
        """The model and batch of a resumed run must be the run's own (its `config.json`);
        checked before restoring, which would fail with a cascade of TensorFlow warnings."""
        latest = outputs_lib.checkpoints_in(self._outputs.checkpoint_dir)
        if before is None or not latest:
            return
        now = self.config.to_dict()
        model = {key: before.get("model", {}).get(key) for key in ("name", "overrides")}
        if model != now["model"]:
            raise ValueError(
                f"model_dir={self.model_dir!r} holds a checkpoint ({latest[0]}) of a different "
                f"model: --model={model['name']} --model_overrides={json.dumps(model['overrides'])}"
                f", not --model={now['model']['name']} --model_overrides="
                f"{json.dumps(now['model']['overrides'])}; resume with the same model or use a "
                "new model_dir.")
        batch = before.get("optimization", {}).get("global_batch_size")
        if batch != now["optimization"]["global_batch_size"]:
            raise ValueError(
                f"model_dir={self.model_dir!r} holds a run with global_batch_size={batch}, but "
                f"this run has global_batch_size={now['optimization']['global_batch_size']}; "
                "resume with the same batch and data settings or use a new model_dir.")

    def _start(self):
        """Writes the run's config (and, for a new run, the step-0 checkpoint) and says whether
        it resumes; once per `Trainer`."""
        if self._started:
            return
        self._started = True
        if self._outputs:
            if self._resumed_from is None:
                self._outputs.write_config(self.config)
                self._outputs.save(0)
                return
            changes = _config_changes(self._previous_config, self.config.to_dict())
            if changes:
                self._log("Resuming with changed settings: " + ", ".join(changes) + ".")
            self._outputs.write_config(self.config)
        if self._resumed_from:
            self._log(f"Resuming from {self._resumed_from}: epoch "
                      f"{int(self.epoch.numpy()) + 1}, batch {int(self.batch_in_epoch.numpy())}, "
                      f"step {int(self.step.numpy())}.")

    def _save(self, state, best=False):
        if not self._outputs:
            return
        self.sync_replicas()
        if not all(np.isfinite(v.numpy()).all() for v in self.model.weights):
            self._diverged(state, "the weights are no longer finite",
                           update=int(self.step.numpy()))
        self._state.assign(json.dumps(state))
        self._outputs.save(int(self.step.numpy()), best=best)

    def _diverged(self, state, what, update):
        last = self._outputs.latest_checkpoint() if self._outputs else None
        kept = (f"the last good checkpoint, {last}, is kept" if last
                else "no checkpoint was written (no model_dir)")
        message = (
            f"Training diverged in update {update} of {self.total_steps} "
            f"(epoch {int(self.epoch.numpy()) + 1}): {what}. Stopped without saving this "
            f"state; {kept}. "
            f"Lower the learning rate (now {self.config.optimization.learning_rate}) or check "
            "the data."
        )
        self._log(message)
        if self._outputs:
            self._outputs.write_results(self._results(state, "diverged", message))
        raise TrainingDiverged(message)

    def _results(self, state, status, message=""):
        rows = state["history"]
        evaluated = [r for r in rows if "test_accuracy" in r]
        results = {
            "status": status,
            "message": message,
            "recipe": self.config.name,
            "model": self.model.name,
            "architecture": {"depth": self.architecture.depth,
                             **dataclasses.asdict(self.architecture)},
            "parameters": int(self.model.count_params()),
            "trainable_parameters": self.freezing.trainable_parameters,
            "frozen_parameters": self.freezing.frozen_parameters,
            "frozen_groups": list(self.freezing.frozen_groups),
            "initialization": state.get("initialization"),
            "dataset": self.info.name,
            "class_names": list(self.info.class_names),
            "epochs": len(rows),
            "epochs_planned": self.epochs,
            "steps": int(self.step.numpy()),
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "global_batch_size": self.runtime.global_batch_size,
            "num_replicas": self.runtime.num_replicas,
            "num_workers": self.runtime.num_workers,
            "strategy": self.runtime.strategy_name,
            "device": self.runtime.device_type,
            "dtype_policy": self.runtime.dtype_policy,
            "jit_compile": self.runtime.jit_compile,
            "train_seconds": state["train_seconds"],
            "wall_seconds": state["wall_seconds"],
            "images_per_second": (state["images"] / state["train_seconds"]
                                  if state["train_seconds"] else None),
            "skipped_files": len(getattr(self.pipeline, "skipped_files", ())),
            "monitor": self._monitor(),
            "best_epoch": state["best_epoch"],
        }
        for split, prefix in (("test", "test_"), ("validation", "val_")):
            split_rows = [r for r in rows if prefix + "accuracy" in r]
            if not split_rows:
                continue
            final = split_rows[-1]
            best = max(split_rows, key=lambda r: r[prefix + "accuracy"])
            results.update({
                f"final_{split}_accuracy": final[prefix + "accuracy"],
                f"final_{split}_error": final[prefix + "error"],
                **({f"final_{split}_top5_error": final[prefix + "top5_error"]}
                   if prefix + "top5_error" in final else {}),
                f"best_{split}_accuracy": best[prefix + "accuracy"],
                f"best_{split}_error": best[prefix + "error"],
                f"best_{split}_epoch": best["epoch"],
                f"{split}_examples": final[prefix + "examples"],
            })
        if evaluated:
            results["final_test_loss"] = evaluated[-1]["test_loss"]
        if self._outputs:
            results["best_checkpoint"] = self._outputs.best_checkpoint()
            results["latest_checkpoint"] = self._outputs.latest_checkpoint()
        results["config"] = self.config.to_dict()
        return results

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
        """
        if self._lock is not None:
            self._lock.acquire()  # released by the previous fit(), or by close()
        self._signal = None
        try:
            with _interruptible(self._interrupt, enabled=self.runtime.num_workers == 1), \
                    _named_input_errors():
                return self._fit(callbacks)
        finally:
            if self._outputs:
                self._outputs.close()
            self.close()

    def _interrupt(self, signum):
        """SIGINT / SIGTERM: finish the current step, checkpoint it and stop (`fit` raises
        `TrainingInterrupted`); a second signal acts at once."""
        self._signal = signum
        self.model.stop_training = True
        if self.runtime.is_chief:
            print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a "
                  "checkpoint (send it again to stop at once).", file=sys.stderr, flush=True)

    def _fit(self, callbacks):
        settings, rt = self.config.runtime, self.runtime
        started = time.time()
        self._start()
        state = json.loads(self._state.numpy().decode())
        wall_before = state["wall_seconds"]
        first_step = int(self.step.numpy())
        history = keras.callbacks.History()
        callback_list = keras.callbacks.CallbackList(
            list(callbacks or []) + [history], model=self.model, epochs=self.epochs,
            steps=self.steps_per_epoch, verbose=settings.verbose,
        )
        self.model.stop_training = False
        self._log(self._describe())
        for line in self._finetune_lines(state):
            self._log(line)
        if self.unreached_boundaries:
            self._log(f"Note: the step schedule's boundaries {self.unreached_boundaries} lie at "
                      f"or after the last step ({self.total_steps}); they are not reached.")
        callback_list.on_train_begin()
        for row in state["history"]:
            history.epoch.append(row["epoch"] - 1)
            for key, value in row.items():
                if key != "epoch":
                    history.history.setdefault(key, []).append(value)

        step = int(self.step.numpy())
        epoch = int(self.epoch.numpy())
        skip = int(self.batch_in_epoch.numpy())
        status = "completed"
        try:
            while epoch < self.epochs and step < self.total_steps:
                epoch_steps = min(self.steps_per_epoch,
                                  self.total_steps - epoch * self.steps_per_epoch)
                sums = state["epoch_sums"] if skip and state["epoch_sums"] else {
                    "loss": 0.0, "correct": 0.0, "count": 0.0, "steps": 0, "seconds": 0.0}
                callback_list.on_epoch_begin(epoch)
                remaining = epoch_steps - skip
                if skip:
                    self._log(f"Epoch {epoch + 1}: continuing after batch {skip}.")
                progbar = None
                if settings.verbose == 1 and rt.is_chief:
                    print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
                    progbar = keras.utils.Progbar(
                        remaining, stateful_metrics=["loss", "accuracy", "lr", "images/s"])
                dataset = rt.strategy.distribute_datasets_from_function(
                    _train_input(self.pipeline, epoch, rt.global_batch_size, skip))
                tick = time.time()
                done = skip
                iterator = iter(dataset)
                for index in range(remaining):
                    batch_index = skip + index
                    callback_list.on_train_batch_begin(batch_index)
                    loss, regularization, correct, count = (
                        float(value) for value in self._train_function(iterator).numpy())
                    step += 1
                    total = loss + regularization
                    if not math.isfinite(total) or total > settings.max_loss:
                        what = (f"the loss is {total}" if not math.isfinite(total) else
                                f"the loss {total:.4g} exceeds max_loss={settings.max_loss:g}")
                        self._diverged(state, what, update=step)
                    done = batch_index + 1
                    sums["loss"] += loss
                    sums["steps"] += 1
                    sums["correct"] += correct
                    sums["count"] += count
                    logs = {"loss": sums["loss"] / sums["steps"],
                            "accuracy": sums["correct"] / sums["count"]}
                    callback_list.on_train_batch_end(batch_index, logs)
                    elapsed = sums["seconds"] + time.time() - tick
                    if progbar is not None:
                        rate = sums["count"] / elapsed if elapsed else 0.0
                        progbar.update(index + 1, [
                            ("loss", logs["loss"]), ("accuracy", logs["accuracy"]),
                            ("lr", float(self.schedule(step - 1))), ("images/s", rate)])
                    if self._outputs and step % settings.summary_every_steps == 0:
                        self._outputs.scalars("train", step, {
                            "batch_loss": loss, "learning_rate": float(self.schedule(step - 1)),
                            "regularization_loss": regularization,
                            "images_per_second": sums["count"] / max(elapsed, 1e-9)})
                    if self.model.stop_training:
                        break
                    if (settings.checkpoint_every_steps and done < epoch_steps
                            and step % settings.checkpoint_every_steps == 0):
                        pause = time.time()
                        self._checkpoint_mid_epoch(state, sums, tick, started, wall_before,
                                                   rt.global_batch_size * (done - skip))
                        tick += time.time() - pause  # saving is not training time
                sums["seconds"] += time.time() - tick
                images = rt.global_batch_size * (done - skip)
                state["train_seconds"] += time.time() - tick
                state["images"] += images
                if done < epoch_steps or self._signal:  # stopped within the epoch
                    state["epoch_sums"] = sums
                    state["wall_seconds"] = wall_before + time.time() - started
                    self._save(state)
                    status = "interrupted" if self._signal else "stopped"
                    break
                logs = self._end_epoch(epoch, step, sums, state)
                epoch += 1
                skip = 0
                self.epoch.assign(epoch)
                self.batch_in_epoch.assign(0)
                improved = logs.get(self._monitor()) is not None and (
                    state["best"] is None or logs[self._monitor()] > state["best"])
                if improved:
                    state["best"], state["best_epoch"] = logs[self._monitor()], epoch
                state["epoch_sums"] = None
                state["wall_seconds"] = wall_before + time.time() - started
                self._save(state, best=improved)
                if self._outputs:
                    self._outputs.write_epoch(state["history"], step)
                    self._outputs.write_results(self._results(state, "running"))
                callback_list.on_epoch_end(epoch - 1, logs)
                remaining_s = (time.time() - started) / (step - first_step) * (
                    self.total_steps - step) if step > first_step else None
                self._log(_epoch_line(epoch, self.epochs, logs, sums["seconds"], remaining_s))
                if self.model.stop_training:
                    status = "stopped" if epoch < self.epochs else "completed"
                    if self._signal and status == "stopped":
                        status = "interrupted"
                    break
        finally:
            if self._outputs:
                self._outputs.flush()
        callback_list.on_train_end(
            {key: values[-1] for key, values in history.history.items()})
        state["wall_seconds"] = wall_before + time.time() - started
        self._state.assign(json.dumps(state))
        self.results = self._results(state, status)
        if status == "interrupted":
            where = (f"checkpoint {self._outputs.latest_checkpoint()} saved; rerun the same "
                     "command to resume" if self._outputs else "nothing saved (no model_dir)")
            self.results["message"] = (
                f"Interrupted by {signal.Signals(self._signal).name} at step {step} of "
                f"{self.total_steps}: {where}.")
        if self._outputs:
            self._outputs.write_epoch(state["history"], step, final=True)
            if settings.save_model and status != "interrupted":
                self.results["exports"] = self._outputs.save_model(
                    self._clean_copy(), serving.Preprocessing.from_pipeline(self.pipeline),
                    self.info.class_names, settings.export_format)
            self._outputs.write_results(self.results)
            self._outputs.close()
        final = self.results.get("final_test_error")
        summary = "no test evaluation" if final is None else (
            f"final test error {_percent(final)}, best {_percent(self.results['best_test_error'])}")
        where = f"; results in {self.model_dir}" if self.model_dir else ""
        self._log(f"Finished ({status}): {self.results['steps']} steps, {summary}{where}.")
        if status == "interrupted":
            raise TrainingInterrupted(self.results["message"], self._signal)
        return history

    def _checkpoint_mid_epoch(self, state, sums, tick, started, wall_before, images):
        saved = dict(sums, seconds=sums["seconds"] + time.time() - tick)
        state = dict(state, epoch_sums=saved,
                     train_seconds=state["train_seconds"] + time.time() - tick,
                     images=state["images"] + images,
                     wall_seconds=wall_before + time.time() - started)
        self._save(state)

    def _end_epoch(self, epoch, step, sums, state):
        settings = self.config.runtime
        logs = {
            "loss": sums["loss"] / max(sums["steps"], 1),
            "accuracy": sums["correct"] / max(sums["count"], 1.0),
        }
        logs["error"] = 1.0 - logs["accuracy"]
        logs["learning_rate"] = float(self.schedule(step - 1))
        logs["images_per_second"] = sums["count"] / sums["seconds"] if sums["seconds"] else 0.0
        logs["epoch_seconds"] = sums["seconds"]
        if (epoch + 1) % settings.eval_every_epochs == 0 or epoch + 1 == self.epochs:
            splits = (["validation"] if self.info.validation_examples else []) + (
                ["test"] if settings.evaluate_test else [])
            for split in splits:
                prefix = "val_" if split == "validation" else "test_"
                metrics = self.evaluate(split)
                for key in ("loss", "accuracy", "error", "top5_accuracy", "top5_error",
                            "examples"):
                    if key in metrics:
                        logs[prefix + key] = metrics[key]
                if self._outputs:
                    self._outputs.scalars(split, step, {
                        "epoch_" + key: metrics[key] for key in ("loss", "accuracy", "error")})
        if self._outputs:
            self._outputs.scalars("train", step, {
                "epoch_" + key: logs[key] for key in ("loss", "accuracy", "error")})
        state["history"].append({"epoch": epoch + 1, "step": step, **logs})
        return logs

    def _clean_copy(self) -> keras.Model:
        """The trained model rebuilt outside the strategy (plain variables) in float32, for
        the exports: ONNX and LiteRT need float32, and mixed precision is a training choice."""
        self.sync_replicas()
        with runtime_lib.policy_scope("float32"):
            model = self.config.model.build(self.info.num_classes, self.info.image_shape)
        model.set_weights(self.model.get_weights())
        return model


def _train_input(pipeline, epoch, global_batch_size, skip):
    def dataset_fn(input_context):
        return pipeline.train(epoch, global_batch_size, input_context=input_context,
                              skip_batches=skip)
    return dataset_fn


def _percent(value):
    return f"{100 * value:.2f}%"


def _epoch_line(epoch, epochs, logs, seconds, remaining_s=None):
    parts = [f"loss {logs['loss']:.4f}", f"error {_percent(logs['error'])}"]
    for prefix, name in (("val_", "val"), ("test_", "test")):
        if prefix + "error" in logs:
            parts.append(f"{name}_loss {logs[prefix + 'loss']:.4f}")
            parts.append(f"{name}_error {_percent(logs[prefix + 'error'])}")
    parts.append(f"lr {logs['learning_rate']:.4g}")
    parts.append(f"{logs['images_per_second']:.0f} images/s")
    line = f"Epoch {epoch}/{epochs}: " + ", ".join(parts) + f" ({seconds:.1f}s)"
    if remaining_s is not None and epoch < epochs:
        line += f"; run ETA {_duration(remaining_s)}"
    return line


def _architecture_line(arch):
    """`ResNet-56: cifar stem, basic blocks 9-9-9, widths 16-32-64, original units, shortcut A`."""
    def dashed(values):
        return "-".join(map(str, values))

    parts = [f"{arch.stem} stem", f"{arch.block} blocks {dashed(arch.stage_blocks)}",
             f"widths {dashed(arch.stage_widths)}"]
    if arch.cardinality > 1:
        parts.append(f"cardinality {arch.cardinality} (group widths "
                     f"{dashed(arch.bottleneck_widths)})")
    parts.append(f"{arch.unit} units")
    if not arch.plain:
        parts.append(f"shortcut {arch.shortcut}")
    return f"{'Plain' if arch.plain else 'ResNet'}-{arch.depth}: " + ", ".join(parts)


def _duration(seconds):
    """`1h02m`, `4m05s` or `9s`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _config_changes(before, now):
    """`section.key: old -> new` for the settings of `now` that differ from `before`."""
    if not before:
        return []
    return [f"{section}.{key}: {before[section].get(key)!r} -> {value!r}"
            for section in ("model", "optimization", "runtime", "data", "finetune")
            for key, value in now[section].items()
            if isinstance(before.get(section), dict) and before[section].get(key) != value]


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
    return TrainResult(history=history, results=trainer.results, model=trainer.model)
