"""An image folder: `<root>/train/<class>/**/*.jpg` and `<root>/test/` (or `val/`,
`validation/`), listed as `keras.utils.image_dataset_from_directory` does
(`training.images.list_split`)."""

import logging
import os

from training import image_folders
from training.sources import base

logger = logging.getLogger(__name__)

TEST_FOLDERS = ("test", "val", "validation")


def _root(config):
    return os.path.abspath(os.path.expanduser(config.dataset))


class ImageFolderSource(base.Source):
    """Class folders of image files; every image is decoded once when the splits are made (into
    memory, or to check it and fingerprint its contents)."""

    @classmethod
    def accepts(cls, config):
        return os.path.isdir(os.path.expanduser(config.dataset))

    def _describe(self):
        root = _root(self.config)
        train_dir = os.path.join(root, "train")
        if not os.path.isdir(train_dir):
            raise ValueError(
                f"Image folder {root} has no train split: {train_dir} does not exist (expected "
                f"{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg)."
            )
        test_dir = next((os.path.join(root, name) for name in TEST_FOLDERS
                         if os.path.isdir(os.path.join(root, name))), None)
        if test_dir is None:
            raise ValueError(
                f"Image folder {root} has no test split: expected one of the folders "
                f"{', '.join(os.path.join(root, name) for name in TEST_FOLDERS)}."
            )
        self._lists = image_folders.list_split(train_dir), image_folders.list_split(test_dir)
        train, test = self._lists
        if train.classes != test.classes:
            raise ValueError(
                f"The class folders of {train_dir} and {test_dir} differ: only in train: "
                f"{sorted(set(train.classes) - set(test.classes))}; only in "
                f"{os.path.basename(test_dir)}: {sorted(set(test.classes) - set(train.classes))}."
            )
        base.check_classes(f"Image folder {root}", train.classes,
                           f"class folder(s) in {train_dir}")
        for what, found in (("images in sub-folders of class folders, included in their "
                             "class", train.nested + test.nested),
                            ("hidden files and folders (names starting with '.') in class "
                             "folders, ignored", train.hidden + test.hidden)):
            if found:
                logger.warning("%s: %d %s, e.g. %s", root, len(found), what, found[0])
        return base.Description(
            os.path.basename(root.rstrip(os.sep)) or root, tuple(train.classes),
            self._probe_size(train.paths), fixed_size=False, channels=3,
            test_source=test_dir)

    @staticmethod
    def _probe_size(paths):
        """(height, width) of the first image that decodes (TensorFlow's decoder)."""
        from training import images as image_files

        return image_files.probe_size(paths)

    def listing(self):
        """`(train, test)`: the `training.image_folders.Split` listings of the two folders."""
        self.describe()
        return self._lists

    def splits(self, plan):
        train, test = self.listing()
        return base.pools(self.config, plan, (train.paths, train.labels),
                          (test.paths, test.labels), True,
                          lambda split, i: (train if split == "train" else test).paths[i])
