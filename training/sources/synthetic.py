"""`dataset="synthetic"`: random images and labels made in memory, for throughput runs."""

import numpy as np

from training import draws
from training.data_config import SYNTHETIC
from training.sources import base

DEFAULT_SYNTHETIC_SIZE = 32


class SyntheticSource(base.Source):
    """`synthetic_examples` training images (and a quarter as many test images) of
    `image_size` (32 by default) with uniform random pixels and labels, drawn from `seed`."""

    @classmethod
    def accepts(cls, config):
        return config.dataset == SYNTHETIC

    def _describe(self):
        size = self.config.image_size or DEFAULT_SYNTHETIC_SIZE
        classes = self.config.num_classes or 10
        return base.Description(SYNTHETIC, tuple(f"class_{i}" for i in range(classes)),
                                (size, size), fixed_size=True, channels=3,
                                test_source=SYNTHETIC, in_memory=True)

    def arrays(self):
        """`{split: (uint8 images, int32 labels, names)}` of the train, validation and test
        splits, in NumPy (the TensorFlow-free pipeline, `training.numpy_data`, reads these)."""
        config, description = self.config, self.describe()
        size, classes = description.natural_hw[0], description.num_classes
        rng = np.random.default_rng([config.seed, draws.SYNTHETIC])
        n_train, n_test = config.synthetic_examples, max(1, config.synthetic_examples // 4)

        def make(n):
            images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
            labels = rng.integers(0, classes, size=n).astype(np.int32)
            return images, labels

        train, test = make(n_train), make(n_test)
        selection = base.select(config, train[1], test[1])
        made = {}
        for split, (images, labels) in (("train", train), ("validation", train), ("test", test)):
            idx = selection[split]
            names = np.array([f"synthetic:{split}[{i}]" for i in idx])
            made[split] = images[idx], labels[idx], names
        return made

    def splits(self, plan):
        from training import splits  # tf.data pools

        made = {split: splits.ArrayPool(*arrays, 3) for split, arrays in self.arrays().items()}
        return base.Splits(made["train"], made["validation"], made["test"])
