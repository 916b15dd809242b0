"""The model directory of a run: its lock, checkpoints, results, history, curves and exports.

Everything here is written so that a run killed at any moment leaves a directory that resumes:
checkpoints become visible only once complete (TensorFlow writes the data first and then
replaces the `checkpoint` state file), the other files are written to a temporary name and
renamed. A model directory is locked (`training.dirlock`) while a run writes it. When the state
file is lost or the newest checkpoint is damaged, `RunDirectory.restore` falls back to the
newest checkpoint that reads cleanly, and says so. A failed write (a full disk, say) raises
`RunDirectoryError` after removing the partial checkpoint, so the last good one stays the
latest.
"""

import csv
import functools
import glob
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from training.dirlock import DirectoryLock, warn
from training.optional import tensorflow as tf
from training.run_state import check_same_run

PLOT_EVERY_S = 30.0


@functools.lru_cache(maxsize=None)
def _scalar_metadata() -> bytes:
    """The summary metadata of a TensorBoard scalar (TensorFlow is imported on first use)."""
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    ).SerializeToString()


class RunDirectoryError(OSError):
    """A file of the model directory could not be written (disk full, read-only, ...)."""


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, data: bytes):
    """Writes `path` through a temporary file and a rename: readers see the old or the new
    contents, never a part. The file gets the permissions of `open()` (0644 under umask 022),
    not `mkstemp`'s 0600."""
    directory = os.path.dirname(path) or "."
    handle, temp = tempfile.mkstemp(prefix=".tmp_", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), _file_mode())
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {value!r}")


_CURVE_COLUMNS = ("epoch", "step", "loss", "accuracy", "error", "learning_rate",
                  "val_loss", "val_accuracy", "val_error", "val_top5_error",
                  "test_loss", "test_accuracy", "test_error", "test_top5_error",
                  "images_per_second", "epoch_seconds")


def to_json(value) -> str:
    """`value` as indented JSON (NumPy scalars and tuples included), as results.json holds it."""
    return json.dumps(value, indent=2, default=_json_default)


def history_csv(rows: List[Dict[str, float]]) -> bytes:
    """The contents of history.csv: one row per epoch, the columns of `_CURVE_COLUMNS` that
    some row has."""
    columns = [c for c in _CURVE_COLUMNS if any(c in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def write_history(model_dir: str, rows: List[Dict[str, float]], title: str = "",
                  plot: bool = True) -> None:
    """Writes `model_dir`'s history.csv and, with `plot`, curves.png (`training.keras_loop`,
    which has no `RunDirectory`)."""
    try:
        atomic_write(os.path.join(model_dir, "history.csv"), history_csv(rows))
        if plot:
            plot_curves(rows, os.path.join(model_dir, "curves.png"), title=title)
    except OSError as error:
        raise RunDirectoryError(f"Could not write the history to {model_dir}: "
                                f"{error.strerror or error}.") from None


def plot_curves(rows: List[Dict[str, float]], path: str, title: str = "") -> None:
    """Saves the training curves like the papers' figures: loss and error (%) against
    iterations, training thin and dashed, validation and test bold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    steps = [row["step"] for row in rows]
    for axis, metric, label, scale in ((axes[0], "loss", "loss", 1.0),
                                       (axes[1], "error", "error (%)", 100.0)):
        axis.plot(steps, [scale * row[metric] for row in rows], "--", linewidth=1,
                  label="train")
        for prefix, name in (("val_", "validation"), ("test_", "test")):
            points = [(row["step"], scale * row[prefix + metric]) for row in rows
                      if prefix + metric in row]
            if points:
                axis.plot(*zip(*points), "-", linewidth=2, marker="." if len(points) < 30
                          else None, label=name)
        axis.set_xlabel("iterations")
        axis.set_ylabel(label)
        if metric == "loss":
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    # Fixed margins: tight_layout() was ~25 ms of the ~130 ms that a drawing cost.
    figure.subplots_adjust(left=0.07, right=0.985, bottom=0.12,
                           top=0.88 if title else 0.95, wspace=0.2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())


_CHECKPOINT_NUMBER = re.compile(r"ckpt-(\d+)\.index$")


def checkpoints_in(folder: str) -> List[str]:
    """The checkpoint prefixes of a folder, newest (highest step) first: those its state file
    lists and those whose `.index` file is there (the state file may be lost)."""
    paths = set()
    state = tf.train.get_checkpoint_state(folder) if os.path.isdir(folder) else None
    if state is not None:
        paths.update(os.path.join(folder, os.path.basename(p))
                     for p in state.all_model_checkpoint_paths)
    for index in glob.glob(os.path.join(folder, "ckpt-*.index")):
        paths.add(index[: -len(".index")])

    def number(path):
        match = _CHECKPOINT_NUMBER.search(path + ".index")
        return int(match.group(1)) if match else -1

    return sorted(paths, key=number, reverse=True)


def damage(path: str) -> Optional[str]:
    """`None` if every tensor of the checkpoint `path` reads back (TensorFlow checks each one's
    CRC), else which file is damaged and how."""
    # TensorFlow's reader raises OpErrors, ValueError or IndexError ("Read less bytes than
    # requested") depending on where a file ends: any error means unreadable.
    try:
        reader = tf.train.load_checkpoint(path)
    except Exception as error:  # noqa: BLE001
        return f"{path}.index is damaged or missing ({_first_line(error)})"
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # noqa: BLE001
        data = sorted(glob.glob(path + ".data-*")) or [path + ".data-00000-of-00001"]
        return f"{', '.join(data)} is damaged or missing ({_first_line(error)})"
    return None


def newest_readable(folder: str, log=warn) -> Optional[str]:
    """The newest checkpoint of `folder` that reads cleanly, or `None` if it has none at all.

    Falling back from the checkpoint the state file names (a damaged newest one, a lost or
    unreadable state file) is reported through `log`; damaged files are left in place.

    Raises:
        ValueError: checkpoints exist but none of them reads.
    """
    candidates = checkpoints_in(folder)
    if not candidates:
        return None
    named = tf.train.latest_checkpoint(folder)
    problems = []
    for path in candidates:
        problem = damage(path)
        if problem is None:
            if path != named:
                if problems:
                    why = "; ".join(problems)
                elif named is None:
                    why = (f"the state file {os.path.join(folder, 'checkpoint')} is missing or "
                           "unreadable")
                else:
                    why = f"the state file names the older {named}"
                log(f"Using {path}, the newest checkpoint that reads cleanly: {why}.")
            return path
        problems.append(problem)
    raise ValueError(f"None of the {len(candidates)} checkpoints in {folder} can be read: "
                     f"{'; '.join(problems)}. Use a new model_dir, or restore the files.")


_OP_CONTEXT = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]")


def _first_line(error) -> str:
    """An error's first line, without TensorFlow's `{{function_node ...}}` and `[Op:...]`."""
    text = _OP_CONTEXT.sub("", getattr(error, "message", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _remove_partial_checkpoints(folder: str) -> None:
    """Removes the `ckpt-N_temp/` folders a failed or killed save leaves behind."""
    for temp in glob.glob(os.path.join(folder, "*_temp")):
        shutil.rmtree(temp, ignore_errors=True)


class RunDirectory:
    """Everything a run writes into its model directory; a no-op (apart from the collective
    checkpoint writes) on multi-worker tasks other than the chief, which also hold no lock.

    Args:
        model_dir: str. The directory.
        runtime: `training.runtime.Runtime`. Who is chief.
        checkpoint: `tf.train.Checkpoint` of the run.
        keep: int. Latest checkpoints to keep.
        title: str. Title of `curves.png`.
        lock: a held `training.dirlock.DirectoryLock` of `model_dir`, or `None` to take one
            (on the chief).
    """

    def __init__(self, model_dir, runtime, checkpoint, keep, title="", lock=None):
        self.model_dir = os.path.abspath(model_dir)
        self.title = title
        self.is_chief = runtime.is_chief
        self.task_id = runtime.task_id
        self.checkpoint = checkpoint
        self.keep = keep
        self.checkpoint_dir = os.path.join(self.model_dir, "checkpoints")
        self.best_dir = os.path.join(self.model_dir, "best")
        self._writers = {}
        self._plotted = -math.inf
        self.lock = lock
        if self.is_chief:
            if self.lock is None:
                self.lock = DirectoryLock(self.model_dir, argument="model_dir").acquire()
            for folder in (self.checkpoint_dir, self.best_dir):
                _remove_partial_checkpoints(folder)
            self._managers()

    def _managers(self):
        self._latest = tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir,
                                                  self.keep, checkpoint_name="ckpt")
        self._best = tf.train.CheckpointManager(self.checkpoint, self.best_dir, 1,
                                                checkpoint_name="ckpt")

    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self.checkpoint_dir)

    def best_checkpoint(self):
        return tf.train.latest_checkpoint(self.best_dir)

    def restore(self, log=warn) -> Optional[str]:
        """Restores the newest checkpoint that reads cleanly into `checkpoint` and returns its
        path, or returns `None` for a new run. After a fallback, the state files list only
        the readable checkpoints (damaged ones are left alone, and so never deleted).

        Raises:
            ValueError: checkpoints exist but none reads, or they are of another model or
                optimizer.
        """
        path = newest_readable(self.checkpoint_dir, log)
        if path is None:
            return None
        # expect_partial: only silences TensorFlow's warnings about values left unrestored
        # (save_counter); the assertion still checks every object of this run.
        try:
            status = self.checkpoint.restore(path).expect_partial()
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise ValueError(
                f"model_dir={self.model_dir!r} holds a checkpoint ({path}) of a different model "
                f"or optimizer; use a new model_dir. ({_first_line(error)})") from None
        if self.is_chief:
            self._relist(self.checkpoint_dir, path)
            best = self.best_checkpoint()
            if best is None or damage(best) is not None:
                self._relist(self.best_dir, None)
            self._managers()
        return path

    def resume(self, config: dict) -> Tuple[Optional[str], Optional[dict]]:
        """Checks that the directory holds the run of `config` (a `to_dict()`;
        `training.run_state.check_same_run`), then `restore()`s; returns the checkpoint's path
        (`None` for a new run) and the config the directory held (`None` without one).

        Raises:
            ValueError: the directory holds another run, or its checkpoints do not read.
        """
        before = self.read_config()
        check_same_run(self.model_dir, before, config, checkpoints_in(self.checkpoint_dir))
        return self.restore(), before

    @staticmethod
    def _relist(folder, newest):
        """Rewrites `folder`'s state file to list its readable checkpoints up to `newest`."""
        readable = []
        for path in reversed(checkpoints_in(folder)):  # oldest first
            if damage(path) is None:
                readable.append(path)
            if path == newest:
                break
        if not readable or readable[-1] == tf.train.latest_checkpoint(folder):
            return
        tf.compat.v1.train.update_checkpoint_state(
            folder, readable[-1], all_model_checkpoint_paths=readable)

    def save(self, step, best=False):
        """Writes a checkpoint (and the best one); a failed write leaves the last good one.

        The best one goes first: the latest checkpoint's state names the best epoch, so once it
        is written the best one must be there. A failure in between leaves the previous latest
        checkpoint, from which a rerun redoes the epoch and writes both.

        Raises:
            RunDirectoryError: the checkpoint could not be written.
        """
        if self.is_chief:
            for manager, wanted in ((self._best, best), (self._latest, True)):
                if not wanted:
                    continue
                try:
                    manager.save(checkpoint_number=step)
                except (OSError, tf.errors.OpError) as error:
                    _remove_partial_checkpoints(manager.directory)
                    raise RunDirectoryError(
                        f"Could not write the checkpoint of step {step} to "
                        f"{manager.directory}: {_first_line(error)}. The last good checkpoint, "
                        f"{self.latest_checkpoint()}, is kept; rerun to resume from it.") from None
            return
        # Non-chief workers take part in the (collective) save but keep nothing.
        for _ in range(2 if best else 1):
            temp = tempfile.mkdtemp(prefix=f"keras_resnets_worker{self.task_id}_")
            try:
                self.checkpoint.write(os.path.join(temp, "ckpt"))
            finally:
                shutil.rmtree(temp, ignore_errors=True)

    def _write(self, name, data: bytes):
        path = os.path.join(self.model_dir, name)
        try:
            atomic_write(path, data)
        except OSError as error:
            raise RunDirectoryError(f"Could not write {path}: "
                                    f"{error.strerror or error}.") from None

    def write_config(self, config):
        if self.is_chief:
            self._write("config.json", json.dumps(config.to_dict(), indent=2).encode())

    def read_config(self) -> Optional[dict]:
        """The `config.json` of the run that wrote the directory, or `None` without one.

        Raises:
            ValueError: it exists but is not a JSON object.
        """
        path = os.path.join(self.model_dir, "config.json")
        if not os.path.exists(path):
            return None
        try:
            with open(path) as file:
                before = json.load(file)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is damaged ({error}); restore it, or use a new "
                             "model_dir.") from None
        if not isinstance(before, dict):
            raise ValueError(f"{path} is damaged (not a JSON object); restore it, or use a "
                             "new model_dir.")
        return before

    def scalars(self, split, step, values):
        if not self.is_chief:
            return
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, "logs", split))
        with self._writers[split].as_default(step=step):
            for name, value in values.items():
                # What tf.summary.scalar writes, without needing the tensorboard package.
                tf.summary.write(name, tf.constant(value, tf.float32),
                                 metadata=_scalar_metadata())

    def write_epoch(self, rows, step, final=False):
        """Writes history.csv, and redraws curves.png when `final` or `PLOT_EVERY_S` have
        passed since the last drawing (a drawing costs ~0.1 s, 1% of a 10 s epoch)."""
        if not self.is_chief or not rows:
            return
        self._write("history.csv", history_csv(rows))
        if final or time.monotonic() - self._plotted >= PLOT_EVERY_S:
            try:
                plot_curves(rows, os.path.join(self.model_dir, "curves.png"), title=self.title)
            except OSError as error:
                raise RunDirectoryError(f"Could not write {self.model_dir}/curves.png: "
                                        f"{error.strerror or error}.") from None
            self._plotted = time.monotonic()
        self.flush()

    def write_results(self, results):
        if self.is_chief:
            self._write("results.json",
                        to_json(results).encode())

    def save_model(self, model, preprocessing, class_names,
                   formats=("keras", "saved_model")) -> Dict[str, str]:
        """Writes the exports of `training.export.export` (raw images in, probabilities out)
        and `class_names.json`, each replaced atomically, and returns their paths (`{}` on
        other workers than the chief).

        Raises:
            RunDirectoryError: a file could not be written or a converter failed; the exports
                written before it are kept.
        """
        if not self.is_chief:
            return {}
        from training import export

        try:
            return export.export(model, preprocessing, class_names, self.model_dir, formats)
        except export.ExportError as error:
            raise RunDirectoryError(f"Could not export the model to {self.model_dir} as "
                                    f"{error.format}: {error}. The checkpoints are kept; rerun "
                                    f"to export, or leave {error.format} out of "
                                    "export_format.") from None
        except (OSError, tf.errors.OpError) as error:
            raise RunDirectoryError(f"Could not export the model to {self.model_dir}: "
                                    f"{_first_line(error)}. The checkpoints are kept; rerun "
                                    "to export.") from None

    def flush(self):
        for writer in self._writers.values():
            writer.flush()

    def close(self):
        """Closes the TensorBoard writers and releases the directory's lock."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
        if self.lock is not None:
            self.lock.release()
