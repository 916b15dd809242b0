"""Training for keras_resnets: tf.data input pipelines, recipes, runtime and the train loop."""
