"""The compiled work of each step of `training.trainer`: losses, one update, one evaluation pass.

Every function here runs under any tf.distribute strategy: `strategy.run` of a replica step,
the loss summed per replica and divided by the global batch, gradients all-reduced (summed) by
`optimizer.apply`, the sums reduced over the replicas before they leave the function.
"""

import warnings
from typing import Dict, Optional

import tensorflow as tf

from training import finetune as finetune_lib
from training import interrupts, optimizers
from training.loop_common import (  # noqa: F401 (re-exported: what this module offered)
    EPOCH_METRICS,
    EVAL_VALUES,
    decayed_variables,
    epoch_logs,
    evaluation_metrics,
    outputs_logits,
)

_SUM = tf.distribute.ReduceOp.SUM
TRAIN_VALUES = ("loss", "regularization", "correct", "count")


def sparse_labels(labels):
    """Class indices (int64) of integer or one-hot labels."""
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


def log_probabilities(outputs, from_logits):
    """Log-probabilities of the model's outputs: from the logits where they are known (stable),
    else the log of the clipped probabilities."""
    logits = _logits_of(outputs, from_logits)
    if logits is not None:
        return tf.nn.log_softmax(logits, axis=-1)
    return tf.math.log(tf.clip_by_value(tf.cast(outputs, tf.float32), 1e-7, 1.0))


def smoothed_targets(labels, classes, label_smoothing):
    """`[batch, classes]` targets of sparse labels or of soft targets (MixUp's and CutMix's mixed
    one-hot targets), smoothed towards uniform. Smoothing is linear, so smoothing mixed targets
    equals mixing smoothed one-hot targets, as timm's `mixup_target` does."""
    if labels.shape.rank is not None and labels.shape.rank > 1:
        target = tf.cast(labels, tf.float32)
    else:
        target = tf.one_hot(labels, classes, dtype=tf.float32)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / tf.cast(classes, tf.float32)
    return target


def cross_entropy(labels, log_probs, label_smoothing):
    """Per-example cross-entropy of the `smoothed_targets` of `labels`."""
    target = smoothed_targets(labels, tf.shape(log_probs)[-1], label_smoothing)
    return -tf.reduce_sum(target * log_probs, axis=-1)


def binary_cross_entropy(labels, logits, label_smoothing, target_threshold=None):
    """Per-example mean over the classes of the sigmoid binary cross-entropy of `logits` and the
    `smoothed_targets` of `labels`, binarised above `target_threshold` unless it is `None`
    (timm's `BinaryCrossEntropy`, whose mean over batch and classes this averages to)."""
    target = smoothed_targets(labels, tf.shape(logits)[-1], label_smoothing)
    if target_threshold is not None:
        target = tf.cast(target > target_threshold, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=target, logits=tf.cast(logits, tf.float32)), axis=-1)


class StepFunctions:
    """The `tf.function`s of a run: `train(iterator)`, `evaluate(dataset)` and `sync()`.

    Args:
        model: `keras.Model`, built under `runtime.strategy`.
        optimizer: its built optimizer.
        runtime: `training.runtime.Runtime`.
        optimization: `training.config.OptimizationConfig`. Coupled weight decay, clipping,
            label smoothing.
        decayed: list of variables. The weights weight decay applies to (`decayed_variables`).
        head_scales: what `training.finetune.head_scales` gives: the classifier's learning-rate
            multipliers. SGD's step is linear in the gradient, so they scale the gradients;
            AdamW's and LAMB's are not, so they scale the update of each variable.
        counters: sequence of int64 `tf.Variable`s that each update advances by one (the step
            and the batch within the epoch).
        average: `training.ema.WeightAverage` or `None`. Updated after every update; its
            averages of per-replica statistics are synchronised with the model's.
    """

    def __init__(self, model, optimizer, runtime, optimization, decayed, head_scales, counters,
                 average=None):
        self.model, self.optimizer, self.runtime = model, optimizer, runtime
        # Decoupled decay is the optimizer's (training.optimizers.build).
        self.weight_decay = (optimization.weight_decay
                             if optimization.decay_mode() == "coupled" else 0.0)
        self.clip_global_norm = optimization.clip_global_norm
        self.label_smoothing = optimization.label_smoothing
        self.loss, self.bce_target_threshold = (optimization.loss,
                                                optimization.bce_target_threshold)
        self.decayed, self.counters = decayed, tuple(counters)
        self.gradient_scales, self.update_scales = (
            (head_scales, None) if optimization.optimizer == "sgd" else (None, head_scales))
        self.average = average
        self.num_classes = int(model.output_shape[-1])
        self.from_logits = outputs_logits(model)
        self.train = self._make_train_function()
        self.evaluate = self._make_eval_function()
        self._sync = self._make_sync_function()
        self._signals = None  # agreed_signal's all-reduce, made on first use

    def regularization(self):
        """Weight decay and the model's own losses, this replica's share of them."""
        total = tf.constant(0.0, tf.float32)
        if self.weight_decay and self.decayed:
            total += 0.5 * self.weight_decay * tf.add_n(
                [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in self.decayed])
        if self.model.losses:
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.model.losses])
        return total / float(self.runtime.num_replicas)

    def _replica_train_step(self, images, targets):
        # Accuracy counts against the larger-weight label of mixed targets.
        labels = sparse_labels(targets)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            per_example = self._training_loss(targets, outputs)
            data_loss = tf.reduce_sum(per_example) / float(self.runtime.global_batch_size)
            regularization = self.regularization()
            scaled = self.optimizer.scale_loss(data_loss + regularization)
        gradients = tape.gradient(scaled, variables)
        if self.clip_global_norm is not None:
            gradients = optimizers.clip_by_global_norm(
                gradients, self.clip_global_norm, optimizers.loss_scale_of(self.optimizer))
        gradients = finetune_lib.scale_gradients(gradients, self.gradient_scales)
        before = None if self.update_scales is None else [
            None if scale == 1.0 else tf.identity(v.value)
            for v, scale in zip(variables, self.update_scales)]
        self.optimizer.apply(gradients, variables)
        if before is not None:
            finetune_lib.scale_updates(variables, before, self.update_scales)
        if self.average is not None:
            self.average.update()
        correct = tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int64), labels)
        return {
            "loss": data_loss,
            "regularization": regularization,
            "correct": tf.reduce_sum(tf.cast(correct, tf.float32)),
            "count": tf.cast(tf.shape(labels)[0], tf.float32),
        }

    def _training_loss(self, targets, outputs):
        """Per-example training loss (`optimization.loss`) of the model's outputs."""
        if self.loss == "cross_entropy":
            return cross_entropy(targets, log_probabilities(outputs, self.from_logits),
                                 self.label_smoothing)
        logits = _logits_of(outputs, self.from_logits)
        if logits is None:
            raise ValueError(
                "loss='binary_cross_entropy' needs the logits of the classifier, and this "
                "model's outputs are probabilities of an unknown origin (not a softmax); build it "
                "with classifier_activation=None or 'softmax'.")
        return binary_cross_entropy(targets, logits, self.label_smoothing,
                                    self.bce_target_threshold)

    def _replica_eval_step(self, images, labels):
        labels = sparse_labels(labels)
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
        # Classes are ranked by scores that keep every distinction: `in_top_k` counts ties as
        # hits, and clipped or underflowed probabilities tie. With the logits known, the scores
        # are log-probabilities (of the crops' mean probability: a logsumexp).
        logits = _logits_of(outputs, self.from_logits)
        if logits is not None:
            scores = tf.nn.log_softmax(logits, axis=-1)
            if crops:
                scores = tf.reduce_logsumexp(tf.reshape(scores, [shape[0], shape[1], -1]),
                                             axis=1) - tf.math.log(tf.cast(shape[1], tf.float32))
            probs = tf.exp(scores)
        else:
            probs = scores = tf.cast(outputs, tf.float32)
            if crops:
                probs = scores = tf.reduce_mean(
                    tf.reshape(scores, [shape[0], shape[1], -1]), axis=1)
        correct = tf.equal(tf.argmax(scores, axis=-1, output_type=tf.int64), labels)
        top5 = tf.math.in_top_k(labels, scores, k=min(5, self.num_classes))
        # The loss clips at 1e-7, as Keras' cross-entropy of probabilities does and as the Keras
        # loop must for a softmax network, whose logits it cannot see: both loops agree.
        log_probs = tf.math.log(tf.clip_by_value(probs, 1e-7, 1.0))
        return {
            "loss": tf.reduce_sum(mask * cross_entropy(labels, log_probs, 0.0)),
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
        counters = self.counters

        @tf.function
        def train_step(iterator):
            images, labels = next(iterator)
            per_replica = strategy.run(replica_fn, args=(images, labels))
            for counter in counters:
                counter.assign_add(1)
            return tf.stack([strategy.reduce(_SUM, per_replica[key], axis=None)
                             for key in TRAIN_VALUES])

        return train_step

    def _make_eval_function(self):
        """The sums of `EVAL_VALUES` over a whole distributed dataset, in one call: the loop
        runs inside the function, for the reason given in `_make_train_function`."""
        strategy, replica_fn = self.runtime.strategy, self._replica_function(
            self._replica_eval_step)

        @tf.function
        def evaluate_dataset(dataset):
            totals = tf.zeros([len(EVAL_VALUES)])
            for images, labels in dataset:
                per_replica = strategy.run(replica_fn, args=(images, labels))
                totals += tf.stack([strategy.reduce(_SUM, per_replica[key], axis=None)
                                    for key in EVAL_VALUES])
            return totals

        return evaluate_dataset

    def evaluate_split(self, pipeline, split: str) -> Dict[str, float]:
        """`evaluation_metrics` of the model's current weights over a split of `pipeline` (a
        `training.data.Pipeline`), every example once, in batches of the global batch size."""
        batch = self.runtime.global_batch_size
        dataset = self.runtime.strategy.distribute_datasets_from_function(
            lambda context: pipeline.evaluation(split, batch, context))
        with warnings.catch_warnings(), interrupts.named_input_errors():
            # Tracing a loop over a distributed dataset reads its tf.data options in graph mode,
            # which TensorFlow warns about; the options are not used.
            warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data")
            sums = self.evaluate(dataset).numpy()
        info = pipeline.info
        return evaluation_metrics(sums, info.num_classes, split, info.name)

    def _make_sync_function(self):
        """Averages the non-trainable weights (batch-norm moving statistics) over replicas.

        Keras 3 creates them with `aggregation="none"`, so under a strategy each replica's copy
        tracks its own batches, and the workers of a multi-worker run end with different
        statistics. Their moving averages are linear in the batch statistics, so averaging the
        copies whenever they are read (evaluation, checkpoints, export) gives exactly the moving
        average of the replica-averaged statistics, as tf.keras' `aggregation=MEAN` did.
        """
        variables = list(self.model.non_trainable_variables)
        if self.average is not None:
            variables += self.average.replica_local
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

    def sync(self) -> None:
        """Makes every replica's copy of the non-trainable weights equal (their mean)."""
        if self._sync is not None:
            self._sync()

    def agreed_signal(self, signum: Optional[int]) -> Optional[int]:
        """The signal that stops the run, as every worker agrees: with several workers,
        SIGTERM if any received one, else SIGINT if any did, else `None`, found by an
        all-reduce that every worker must call at the same point; with one, `signum`.

        Checkpoints are collective, so the workers must stop after the same step; a signal
        delivered to some workers only, or between steps, must not let the others go on."""
        if self.runtime.num_workers == 1:
            return signum
        if self._signals is None:
            strategy = self.runtime.strategy

            @tf.function
            def signals(received):
                # tf.identity: a tensor from outside the replica fails to all-reduce under
                # MultiWorkerMirroredStrategy ("destinations can not be empty").
                total = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.identity(received)))
                return strategy.experimental_local_results(total)[0]

            self._signals = signals
        received = self._signals(tf.constant(
            [signum == stop for stop in interrupts.STOP_SIGNALS], tf.int32)).numpy()
        return next((stop for stop, count in zip(interrupts.STOP_SIGNALS[::-1], received[::-1])
                     if count), None)
