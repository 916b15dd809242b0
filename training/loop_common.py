"""What both training loops compute outside their compiled steps, without TensorFlow: the
weights that weight decay applies to, the evaluation metrics of a split from its sums, whether
a model's outputs are logits, and the states of its random draws that checkpoints carry.

`training.steps` (the TensorFlow loop's compiled steps) re-exports these; `training.keras_loop`
imports them from here, so that it runs where TensorFlow is not installed.
"""

import base64
from typing import Any, Dict, List, Optional

import keras
import numpy as np

EVAL_VALUES = ("loss", "correct", "correct_top5", "count")
# The evaluation metrics an epoch's logs carry, as `val_*` and `test_*`.
EPOCH_METRICS = ("loss", "accuracy", "error", "top5_accuracy", "top5_error", "examples")


def decayed_variables(model: keras.Model, decay_bn_and_bias: bool) -> List[keras.Variable]:
    """The weights that weight decay applies to: every kernel, and with `decay_bn_and_bias`
    also every batch-norm scale and offset and every bias."""
    return [v for v in model.trainable_variables
            if decay_bn_and_bias or v.name.split("/")[-1].endswith("kernel")]


def _seed_states(model: keras.Model) -> List[keras.Variable]:
    return [generator.state for layer in model._flatten_layers(include_self=True)
            for generator in getattr(layer, "_seed_generators", [])]


def random_states(model: keras.Model) -> Optional[Dict[str, Any]]:
    """The states of the model's random draws (the masks of dropout and drop-path), for a
    checkpoint's JSON state; `None` when the model draws none.

    `"seeds"`: the states of Keras' `SeedGenerator`s, as lists of ints. Neither
    `model.weights` (so `save_weights`) nor a `tf.train.Checkpoint` of the model holds them.
    `"torch"`: on PyTorch, Keras' dropout without a noise shape draws from torch's own
    generators instead (keras/src/backend/torch/random.py), so their states (base64), CPU and
    CUDA. A resumed run needs them all to draw the masks that an uninterrupted run draws."""
    variables = _seed_states(model)
    if not variables:
        return None
    states = {"seeds": [[int(x) for x in np.asarray(keras.ops.convert_to_numpy(v.value))
                         .reshape(-1)] for v in variables]}
    if keras.backend.backend() == "torch":
        import torch

        generators = [torch.get_rng_state()] + (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])
        states["torch"] = [base64.b64encode(g.numpy().tobytes()).decode() for g in generators]
    return states


def set_random_states(model: keras.Model, states: Optional[Dict[str, Any]]) -> None:
    """Restores what `random_states` gave; `None` (a checkpoint without them) changes nothing.

    Raises:
        ValueError: `states` is not of this model's random draws.
    """
    if states is None:
        return
    variables, seeds = _seed_states(model), states["seeds"]
    if [len(s) for s in seeds] != [int(np.prod(v.shape)) for v in variables]:
        raise ValueError(f"The checkpoint holds {len(seeds)} random states, and this model "
                         f"({model.name}) has {len(variables)}; the models differ.")
    for variable, state in zip(variables, seeds):
        variable.assign(np.asarray(state, dtype=variable.dtype).reshape(variable.shape))
    set_torch_generators(states)


def set_torch_generators(states: Optional[Dict[str, Any]]) -> None:
    """Restores torch's generators from `random_states`' `"torch"` entry (on PyTorch only).

    Keras' `fit` on PyTorch draws from them once as it starts (its `DataLoader`'s base seed),
    so a run resumed within an epoch restores them again as its first batch begins."""
    if not (states and states.get("torch")) or keras.backend.backend() != "torch":
        return
    import torch

    cpu, *cuda = [torch.frombuffer(bytearray(base64.b64decode(g)), dtype=torch.uint8)
                  for g in states["torch"]]
    torch.set_rng_state(cpu)
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


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
