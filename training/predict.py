r"""`python -m training.predict`: the classes of images, by a training.fit model directory.

    python -m training.predict --model_dir=runs/resnet20 cat.png dog.jpg
    python -m training.predict --model_dir=runs/resnet20 --top_k=3 --json photos/

Reads the run's `model.keras` and `class_names.json` (`training.export`): the model takes the
images as they are (any size; it resizes, crops and normalises them as the run's evaluation
did). A folder stands for its `.jpg`, `.jpeg` and `.png` files, sub-folders included, hidden
ones left out. Each image gives one line, `path: class (87.50%), class (6.25%), ...`, most
probable first, or with `--json` one JSON object per line: `{"file": path, "predictions":
[{"class": name, "probability": p}, ...]}`. An image that cannot be read or decoded gives one
line naming it and why (on stderr, or `{"file": path, "error": why}` with `--json`); the others
are still predicted, and the exit code is 1. A bad flag or model directory exits with code 2.
"""

import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app, flags

from training import cli

PROGRAM = "training.predict"
BATCH = 32


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of `python -m training.predict` in `flag_values`."""
    flags.DEFINE_string("model_dir", None, "The model directory of a training.fit run (its "
                        "model.keras and class_names.json).", flag_values=flag_values)
    flags.DEFINE_integer("top_k", 5, "Classes to print per image, most probable first.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_boolean("json", False, "One JSON object per image instead of a text line.",
                         flag_values=flag_values)


FLAGS = flags.FLAGS


def load(model_dir: str):
    """`(model, class names)` of a model directory's `model.keras` and `class_names.json`.

    Raises:
        ValueError: either file is missing or unreadable, or they disagree on the classes.
    """
    from training import export

    if not os.path.isdir(model_dir):
        raise ValueError(f"model_dir={model_dir!r} is not a directory.")
    paths = [os.path.join(model_dir, name)
             for name in (export.FILES["keras"], export.CLASS_NAMES_FILE)]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"model_dir={model_dir!r} has no {os.path.basename(path)}; train "
                             "with python -m training.fit --export_format=keras,... (the "
                             "default) to write it.")
    try:
        with open(paths[1]) as file:
            names = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{paths[1]} is unreadable ({error}).") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"{paths[1]} is not a JSON list of class names.")
    import keras

    try:
        model = keras.models.load_model(paths[0], compile=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{paths[0]} cannot be loaded ({cli.one_line(error)}).") from None
    if model.output_shape[-1] != len(names):
        raise ValueError(f"{paths[0]} has {model.output_shape[-1]} outputs but {paths[1]} "
                         f"names {len(names)} classes.")
    return model, names


def image_files(paths: Sequence[str]) -> List[Tuple[str, Optional[str]]]:
    """`(file, None)` for each file and each image in the folders of `paths`, in order, and
    `(path, why)` for a path that is neither or a folder without images."""
    from training.images import IMAGE_EXTENSIONS

    found = []
    for path in paths:
        if not os.path.isdir(path):
            found.append((path, None if os.path.exists(path) else "no such file"))
            continue
        images = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            images += [(os.path.join(root, f), None) for f in sorted(files)
                       if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
        found += images or [(path, "a folder without .jpg, .jpeg or .png files")]
    return found


def predict(model, class_names: Sequence[str], paths: Sequence[str], top_k: int = 5
            ) -> List[Dict]:
    """The `top_k` classes of each image of `paths` (files or folders), most probable first.

    Args:
        model: `keras.Model`. Raw images in, probabilities out (`load(model_dir)[0]`).
        class_names: sequence of str. The class of each output.
        paths: sequence of str. Image files, and folders searched for `.jpg`, `.jpeg` and
            `.png` files.
        top_k: int. Classes per image. Defaults to `5`.

    Returns:
        One dict per image, in order: `{"file": path, "predictions": [{"class": name,
        "probability": p}, ...]}`, or `{"file": path, "error": why}` for a path that could not
        be read or decoded (or a folder without images).

    Example:

    >>> import os, tempfile, numpy as np, tensorflow as tf, keras_resnets
    >>> from training import serving
    >>> network = keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16), classes=3)
    >>> model = serving.serving_model(network, serving.Preprocessing(
    ...     (32, 32), 3, np.float32(1 / 255), np.float32(0), fit_size=(32, 32)))
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
    >>> tf.io.write_file(path, tf.io.encode_png(np.full((40, 30, 3), 128, np.uint8)))
    >>> [result] = predict(model, ["cat", "dog", "owl"], [path], top_k=2)
    >>> len(result["predictions"]), sorted(result["predictions"][0])
    (2, ['class', 'probability'])
    """
    import numpy as np
    import tensorflow as tf

    if top_k < 1:
        raise ValueError(f"top_k must be at least 1; got {top_k!r}.")
    channels = model.input_shape[-1]
    results, batch = [], []

    def flush():
        probabilities = np.asarray(model(np.stack([image for _, image in batch]),
                                         training=False))
        for (index, _), row in zip(batch, probabilities):
            best = np.argsort(-row, kind="stable")[:top_k]
            results[index]["predictions"] = [
                {"class": class_names[k], "probability": float(row[k])} for k in best]
        batch.clear()

    for path, problem in image_files(paths):
        results.append({"file": path})
        if problem is None:
            try:
                with open(path, "rb") as file:
                    contents = file.read()
                image = tf.io.decode_image(contents, channels=channels,
                                           expand_animations=False).numpy()
            except OSError as error:
                problem = error.strerror or str(error)
            except tf.errors.InvalidArgumentError:
                problem = "not a JPEG, PNG, GIF or BMP image, or a damaged one"
        if problem is not None:
            results[-1]["error"] = problem
            continue
        if batch and (batch[0][1].shape != image.shape or len(batch) == BATCH):
            flush()  # a batch holds images of one size
        batch.append((len(results) - 1, image.astype(np.float32)))
    if batch:
        flush()
    return results


def _line(result) -> str:
    return f"{result['file']}: " + ", ".join(
        f"{p['class']} ({100 * p['probability']:.2f}%)" for p in result["predictions"])


def main(argv):
    if not FLAGS.model_dir:
        cli.fail(PROGRAM, "--model_dir is required.")
    if len(argv) < 2:
        cli.fail(PROGRAM, "give at least one image file or folder after the flags.")
    cli.quiet_logs()
    model, names = cli.set_up_or_fail(PROGRAM, lambda: load(FLAGS.model_dir))
    # The image decoders write their own complaints about damaged files (libjpeg's "Corrupt
    # JPEG data", ...) to stderr; each such file gets its one line below instead.
    with cli.captured_stderr() as captured:
        results = predict(model, names, argv[1:], FLAGS.top_k)
    captured.discard()
    failed = 0
    for result in results:
        failed += "error" in result
        if FLAGS.json:
            print(json.dumps(result), flush=True)
        elif "error" in result:
            sys.stdout.flush()
            sys.stderr.write(f"{PROGRAM}: error: {result['file']}: {result['error']}.\n")
            sys.stderr.flush()
        else:
            print(_line(result), flush=True)
    if failed:
        sys.exit(1)


def run_main():
    """The console entry point."""
    define_flags()
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))


if __name__ == "__main__":
    run_main()
