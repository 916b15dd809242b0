"""Training for keras_resnets: the papers' recipes, tf.data input, every tf.distribute strategy.

The pieces, each usable on its own:

- `training.config`: `ExperimentConfig` (model, optimization, runtime and data settings) and the
  named paper recipes (`recipe("cifar10_resnet110")`); its optimisation part is
  `training.optimization_config` (`OptimizationConfig`).
- `training.schedules`: learning-rate schedules (step schedules in iterations, warm start, linear
  warmup, cosine).
- `training.runtime`: distribution strategy, mixed-precision policy, XLA choice.
- `training.optimizers`: SGD, AdamW or LAMB, decoupled weight decay, clipping by global norm;
  `training.ema`: the moving average of the weights (`ema_decay`).
- `training.data`: tf.data pipelines over a data source, with `training.data_config`
  (`DataConfig`), `training.sources` (synthetic data, image folders, TFRecord files, TFDS),
  `training.splits` (listing, sharding and loading examples) and `training.augment` (with
  `training.randaugment` and `training.mixing`: RandAugment, random erasing, MixUp, CutMix);
  `training.numpy_data`: the same input without TensorFlow (PIL and NumPy, for synthetic data
  and image folders), which `training.loaders.make_pipeline` picks where TensorFlow is not
  installed (`training.optional` keeps the Keras loop's imports free of it).
- `training.analysis`: gradient measurements per residual unit.
- `training.trainer`: one custom training loop for every strategy, with checkpoints, resume,
  logs and exports (`trainer.run(config)`); its compiled steps are `training.steps`, its
  accounting `training.run_state`, its log lines and results `training.report`, its model
  directory `training.outputs`.
- `python -m training.fit` and `python -m training.evaluate`: the command lines; the flags of
  `training.fit` (`training.setting_flags`) are generated from the configs' fields by
  `training.field_flags`.
"""
