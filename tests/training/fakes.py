"""A test double of `training.data.Pipeline`: small in-memory images that a tiny model learns.

`FakePipeline` implements the interface the trainer consumes (`info`, `train`, `evaluation`,
`steps_per_epoch`, and `normalizer`, `fit_size` and `eval_center_crop` for the exports) over
random images whose labels are learnable (each class is a noisy copy of a random prototype), so
trainer tests do not depend on the real pipeline's augmentation. Its order is a pure function
of `(seed, epoch)`, and with an `input_context` it yields per-replica batches in the order
`tf.distribute` hands them to the replicas.
"""

import numpy as np

from training.data import DatasetInfo


class FakePipeline:
    """In-memory learnable random images.

    Args:
        train_examples, validation_examples, test_examples: int. Split sizes.
        image_size: int. Square images of this size, 3 channels.
        num_classes: int.
        seed: int. Seeds the order of each epoch together with the epoch.
        eval_crops: int. 1, or 10 for evaluation elements of shape [batch, 10, H, W, 3].
        noise: float. Standard deviation of the noise around each class prototype.
        data_seed: int. Seeds the images themselves.
    """

    def __init__(self, train_examples=128, validation_examples=0, test_examples=40,
                 image_size=8, num_classes=4, seed=0, eval_crops=1, noise=1.0, data_seed=1234):
        total = train_examples + validation_examples + test_examples
        rng = np.random.RandomState(data_seed)
        prototypes = rng.randn(num_classes, image_size, image_size, 3).astype("float32")
        labels = rng.randint(num_classes, size=total).astype("int64")
        images = prototypes[labels] + noise * rng.randn(total, image_size, image_size, 3)
        images = images.astype("float32")
        cuts = np.cumsum([train_examples, validation_examples])
        self._splits = {
            "train": (images[:cuts[0]], labels[:cuts[0]]),
            "validation": (images[cuts[0]:cuts[1]], labels[cuts[0]:cuts[1]]),
            "test": (images[cuts[1]:], labels[cuts[1]:]),
        }
        self.seed = seed
        self.eval_crops = eval_crops
        self.info = DatasetInfo("fake", num_classes, (image_size, image_size, 3), train_examples,
                                validation_examples, test_examples,
                                tuple(f"class{i}" for i in range(num_classes)))
        self.calls = []  # (method, epoch or split, skip_batches or None, pipeline id)
        # What the exports put in front of the model: the images as they are.
        self.normalizer = (np.float32(1), np.float32(0))
        self.fit_size, self.eval_center_crop = (image_size, image_size), False

    def steps_per_epoch(self, global_batch_size):
        return self.info.train_examples // global_batch_size

    @staticmethod
    def _layout(input_context):
        if input_context is None:
            return 1, 1, 0
        return (input_context.num_replicas_in_sync, input_context.num_input_pipelines,
                input_context.input_pipeline_id)

    def train(self, epoch, global_batch_size, input_context=None, skip_batches=0):
        images, labels = self._splits["train"]
        replicas, pipelines, pipeline_id = self._layout(input_context)
        self.calls.append(("train", epoch, skip_batches, pipeline_id))
        per_replica = global_batch_size // replicas
        local = replicas // pipelines
        order = np.random.RandomState([self.seed, epoch]).permutation(len(labels))
        rows = []
        for step in range(skip_batches, self.steps_per_epoch(global_batch_size)):
            for replica in range(pipeline_id * local, (pipeline_id + 1) * local):
                start = step * global_batch_size + replica * per_replica
                rows.append(order[start:start + per_replica])
        index = np.concatenate(rows) if rows else np.zeros([0], "int64")
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(
            (images[index], labels[index])).batch(per_replica, drop_remainder=True)

    def evaluation(self, split, global_batch_size, input_context=None):
        if split not in ("validation", "test"):
            raise ValueError(f"split must be 'validation' or 'test'; got {split!r}.")
        images, labels = self._splits[split]
        replicas, pipelines, pipeline_id = self._layout(input_context)
        self.calls.append(("evaluation", split, None, pipeline_id))
        if self.eval_crops == 10:
            flipped = images[:, :, ::-1]
            images = np.stack([images, flipped] * 5, axis=1)
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        dataset = dataset.batch(global_batch_size // replicas)
        if pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        return dataset
