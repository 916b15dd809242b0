"""Image folders without TensorFlow: listing a split's class folders, and the error that names
image files that do not decode.

`list_split` lists one split of an image folder the way `keras.utils.image_dataset_from_directory`
does (class folders in alphabetical order, images found in every sub-folder of a class folder),
except that it ignores hidden files and folders (names starting with `"."`, such as the `._*`
AppleDouble files macOS leaves on copied drives, which are not images). Both loaders use it:
`training.images` (TensorFlow) and `training.pil_images` (PIL).
"""

import dataclasses
import os
import re
from typing import List, Optional, Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# corrupt_message's text: the list of names, then ours (no "]", which ends it in TF's messages).
_IN_MESSAGE = re.compile(r"Corrupt or unreadable image files?: (?P<files>.*?)\. [^\]]*?"
                         r"to skip (?:it|them)\.")


class CorruptImageError(ValueError):
    """Image files (or TFDS records) that do not decode.

    Args:
        files: sequence of str. The files or records, named as the pipeline names them.
        detail: str. Said after the list (ends with a space). Defaults to `""`.

    Attributes:
        files: tuple of str.
    """

    def __init__(self, files: Sequence[str], detail: str = ""):
        self.files = tuple(files)
        super().__init__(corrupt_message(self.files, detail))

    @classmethod
    def from_op_error(cls, error: Exception) -> Optional["CorruptImageError"]:
        """The error that a TensorFlow error of an input pipeline carries, or `None`.

        A corrupt image met while reading stops the input with a
        `tf.errors.InvalidArgumentError` whose long message holds this error's one line;
        `files` are the names it lists.
        """
        match = _IN_MESSAGE.search(str(getattr(error, "message", error)))
        if match is None:
            return None
        found = cls.__new__(cls)
        ValueError.__init__(found, match.group(0))
        found.files = tuple(re.sub(r" and \d+ more$", "", match.group("files")).split(", "))
        return found


def corrupt_message(files: Sequence[str], detail: str = "") -> str:
    """The one-line message that names corrupt files (the first five of them)."""
    listed = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (f"Corrupt or unreadable image file{'s' if len(files) > 1 else ''}: {listed}. "
            f"{detail}Remove or replace {'them' if len(files) > 1 else 'it'}, or set "
            "skip_corrupt=True (--skip_corrupt) to skip "
            f"{'them' if len(files) > 1 else 'it'}.")


def message_around(count, detail):
    """The text of `CorruptImageError`'s message before and after a list of `count` names."""
    marks = ["\x00"] * count
    return tuple(corrupt_message(marks, detail).split(", ".join(marks)))


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of an image folder.

    Attributes:
        classes: list of str. The class folders, in alphabetical order (label = position).
        paths: NumPy array of str. The images, by class, then by folder and name.
        labels: int32 NumPy array. The label of each image.
        nested: list of str. The images among `paths` that lie in sub-folders of their class
            folder.
        hidden: list of str. Hidden files and folders in the class folders, ignored.
    """

    classes: List[str]
    paths: np.ndarray
    labels: np.ndarray
    nested: List[str]
    hidden: List[str]


def list_split(split_dir: str) -> Split:
    """The images of `split_dir/<class>/**/*.{jpg,jpeg,png}`; a `ValueError` names an empty one.

    Sub-folders of a class folder belong to its class, as in Keras. Symbolic links to folders
    inside class folders are not followed (Keras' default).
    """
    classes = sorted(entry.name for entry in os.scandir(split_dir)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"{split_dir} has no class folders (expected {split_dir}/<class>/*.jpg).")
    paths, labels, nested, hidden = [], [], [], []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        found, class_hidden = [], []
        for root, dirs, files in os.walk(folder):
            class_hidden += [os.path.join(root, d) for d in dirs if d.startswith(".")]
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # walk in name order
            for file in sorted(files):
                if file.startswith("."):
                    class_hidden.append(os.path.join(root, file))
                elif file.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(os.path.join(root, file))
                    if root != folder:
                        nested.append(found[-1])
        if not found:
            ignored = (f"; ignored {len(class_hidden)} hidden file(s) or folder(s) such as "
                       f"{class_hidden[0]}" if class_hidden else "")
            raise ValueError(f"Class folder {folder} has no images "
                             f"({', '.join(IMAGE_EXTENSIONS)} files){ignored}.")
        paths += found
        labels += [label] * len(found)
        hidden += class_hidden
    return Split(classes, np.array(paths), np.array(labels, np.int32), nested, hidden)
