"""The optimizer of a run and the gradient clipping of its step.

`build(optimization, schedule, policy, model)` returns Keras' `SGD`, `AdamW` or `Lamb` over the
learning-rate schedule, with decoupled weight decay where `optimization` asks for it, and loss
scaling under `mixed_float16`. Coupled decay (the papers' L2) is not the optimizer's: it is a
loss term (`training.steps.StepFunctions.regularization`).

Clipping is done here rather than by Keras' `global_clipnorm`: Keras clips the gradients a
replica passes to `apply`, before they are summed over the replicas, so under a strategy each
replica would clip its own partial gradient by its own norm. `clip_by_global_norm` clips by the
norm of the summed gradient, the one a single device computes.
"""

from typing import List, Optional, Sequence

import keras

from training import runtime as runtime_lib


def build(optimization, schedule, policy: str, model: Optional[keras.Model] = None,
          decayed: Sequence = ()):
    """The optimizer of `optimization` (a `training.config.OptimizationConfig`).

    Args:
        optimization: `training.config.OptimizationConfig`.
        schedule: the learning-rate schedule (`training.schedules.build`).
        policy: str. The dtype policy; `"mixed_float16"` adds a `LossScaleOptimizer`.
        model: `keras.Model` or `None`. With decoupled decay, the trainable weights of `model`
            not in `decayed` are excluded from it (call before the optimizer is built).
        decayed: the variables weight decay applies to (`training.steps.decayed_variables`).

    Returns:
        A Keras optimizer, not yet built.

    Example:

    >>> from training import config
    >>> settings = config.OptimizationConfig(epochs=1, optimizer="adamw", weight_decay=0.05)
    >>> optimizer = build(settings, 0.001, "float32")
    >>> type(optimizer).__name__, optimizer.weight_decay, settings.decay_mode()
    ('AdamW', 0.05, 'decoupled')
    """
    decoupled = optimization.decay_mode() == "decoupled" and optimization.weight_decay > 0
    weight_decay = optimization.weight_decay if decoupled else None
    if optimization.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule, momentum=optimization.momentum,
            nesterov=optimization.nesterov, weight_decay=weight_decay)
    else:
        kind = keras.optimizers.AdamW if optimization.optimizer == "adamw" else (
            keras.optimizers.Lamb)
        epsilon = {} if optimization.epsilon is None else {"epsilon": optimization.epsilon}
        # AdamW's constructor needs a number; None is how the base class turns decay off.
        optimizer = kind(learning_rate=schedule, beta_1=optimization.momentum,
                         beta_2=optimization.beta_2, weight_decay=weight_decay or 0.0,
                         **epsilon)
        if not decoupled:
            optimizer.weight_decay = None
    if decoupled and model is not None:
        kept = {id(v) for v in decayed}
        excluded = [v for v in model.trainable_variables if id(v) not in kept]
        if excluded:
            optimizer.exclude_from_weight_decay(var_list=excluded)
    return runtime_lib.wrap_optimizer(optimizer, policy)


def global_norm(gradients):
    """The L2 norm of all `gradients` together (`None` entries skipped), a float32
    `tf.Tensor` (the TensorFlow loop's; imported here, so the Keras loop runs without it)."""
    import tensorflow as tf

    squares = [tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in gradients
               if g is not None]
    return tf.sqrt(tf.add_n(squares)) if squares else tf.constant(0.0)


def clip_by_global_norm(gradients, clip_norm: float, loss_scale=None) -> List:
    """`gradients` times `min(1, clip_norm / norm)`, with `norm` that of their sum over the
    replicas (in a replica context: one all-reduce), divided by `loss_scale` when the gradients
    carry a loss scale. What each replica passes on still sums to the clipped total.

    Example:

    >>> import tensorflow as tf
    >>> clipped = clip_by_global_norm([tf.constant([3.0]), None, tf.constant([4.0])], 1.0)
    >>> [None if g is None else round(float(g[0]), 6) for g in clipped]
    [0.6, None, 0.8]
    """
    import tensorflow as tf

    present = [g for g in gradients if g is not None]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        present = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    norm = global_norm(present)
    if loss_scale is not None:
        norm = norm / tf.cast(loss_scale, tf.float32)
    factor = clip_norm / tf.maximum(norm, clip_norm)
    return [None if g is None else g * tf.cast(factor, g.dtype) for g in gradients]


def loss_scale_of(optimizer):
    """The current loss scale of a `LossScaleOptimizer`, else `None`."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None
