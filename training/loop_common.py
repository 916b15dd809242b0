"""What both training loops compute outside their compiled steps, without TensorFlow: the
weights that weight decay applies to, and the evaluation metrics of a split from its sums.

`training.steps` (the TensorFlow loop's compiled steps) re-exports these; `training.keras_loop`
imports them from here, so that it runs where TensorFlow is not installed.
"""

from typing import Dict, List

import keras

EVAL_VALUES = ("loss", "correct", "correct_top5", "count")
# The evaluation metrics an epoch's logs carry, as `val_*` and `test_*`.
EPOCH_METRICS = ("loss", "accuracy", "error", "top5_accuracy", "top5_error", "examples")


def decayed_variables(model: keras.Model, decay_bn_and_bias: bool) -> List[keras.Variable]:
    """The weights that weight decay applies to: every kernel, and with `decay_bn_and_bias`
    also every batch-norm scale and offset and every bias."""
    return [v for v in model.trainable_variables
            if decay_bn_and_bias or v.name.split("/")[-1].endswith("kernel")]


def outputs_logits(model: keras.Model) -> bool:
    """Whether the model's outputs are logits (a classifier without an activation,
    `classifier_activation=None`) rather than probabilities."""
    return getattr(model.layers[-1], "activation", None) in (None, keras.activations.linear)


def evaluation_metrics(sums, num_classes: int, split: str, dataset: str) -> Dict[str, float]:
    """The metrics of `Trainer.evaluate` from the sums of `EVAL_VALUES` over a split."""
    totals = dict(zip(EVAL_VALUES, (float(value) for value in sums)))
    count = totals["count"]
    if count == 0:
        raise ValueError(f"The {split} split of {dataset} has no examples.")
    accuracy = totals["correct"] / count
    metrics = {"loss": totals["loss"] / count, "accuracy": accuracy, "error": 1.0 - accuracy,
               "examples": int(count)}
    if num_classes > 5:
        top5 = totals["correct_top5"] / count
        metrics.update(top5_accuracy=top5, top5_error=1.0 - top5)
    return metrics


def epoch_logs(split: str, metrics: Dict[str, float]) -> Dict[str, float]:
    """The `EPOCH_METRICS` of `evaluation_metrics` as an epoch's logs: `val_*` for the
    validation split, `test_*` for the test split."""
    prefix = "val_" if split == "validation" else "test_"
    return {prefix + key: metrics[key] for key in EPOCH_METRICS if key in metrics}
