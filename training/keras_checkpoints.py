"""Checkpoints of `training.keras_loop`: Keras `.weights.h5` files and a state file.

`model.save_weights` writes the model's and its optimizer's variables (the step counter, the
momentum or Adam moments, and the weight average of `ema_decay`, `training.keras_ema`) on every
backend; `keras_state.json` names the newest such file and holds what the loop needs to go on:
the epoch, the batch within it, the step, the epoch's running metric sums, the history rows,
the clocks, the states of the random masks (`training.loop_common.random_states`), and the
name of the best epoch's weights (`keras_best_step<N>.weights.h5`, a copy kept until a better
epoch). A new weights file is written under a `partial.` name and renamed
when whole, the state that names it is written (atomically) after that, and the files it
replaces are removed last, so a kill at any moment leaves a state that names whole files.
"""

import glob
import json
import os
import shutil
from typing import Any, Dict, Optional

from training.outputs import RunDirectoryError, atomic_write, to_json

STATE = "keras_state.json"


def weights_name(step: int) -> str:
    """The weights file of the checkpoint after `step` updates."""
    return f"keras_step{step}.weights.h5"


def best_name(step: int) -> str:
    """The copy of the weights after `step` updates kept as the best epoch's."""
    return f"keras_best_step{step}.weights.h5"


def save(model_dir: str, model, state: Dict[str, Any], best: bool = False) -> str:
    """Writes `model`'s weights and optimizer after `state["step"]` updates (and, when `best`,
    their copy `best_name(step)`, which the state then names as `"best"`), then the state;
    returns the weights file's name."""
    name = weights_name(state["step"])
    path = os.path.join(model_dir, name)
    temp = os.path.join(model_dir, "partial." + name)  # save_weights wants .weights.h5
    if best:
        state = {**state, "best": best_name(state["step"])}
    try:
        model.save_weights(temp, overwrite=True)
        os.replace(temp, path)
        if best:
            shutil.copyfile(path, os.path.join(model_dir, "partial." + state["best"]))
            os.replace(os.path.join(model_dir, "partial." + state["best"]),
                       os.path.join(model_dir, state["best"]))
        atomic_write(os.path.join(model_dir, STATE), to_json({"weights": name, **state}).encode())
    except OSError as error:
        raise RunDirectoryError(f"Could not write a checkpoint to {model_dir}: "
                                f"{error.strerror or error}.") from None
    for pattern, kept in (("*keras_step*", name), ("*keras_best_step*", state.get("best"))):
        for old in glob.glob(os.path.join(model_dir, pattern + ".weights.h5")):
            if os.path.basename(old) != kept:
                os.remove(old)
    return name


def read_state(model_dir: str) -> Optional[Dict[str, Any]]:
    """The state of `model_dir`'s newest checkpoint, or `None` when it has none."""
    path = os.path.join(model_dir, STATE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"The checkpoint of {model_dir} cannot be read ({error}); use a new "
                         "model_dir.") from None


def load(model_dir: str, model) -> Optional[Dict[str, Any]]:
    """Loads the newest checkpoint's weights and optimizer into `model` (its optimizer built)
    and returns its state, or `None` when `model_dir` has none."""
    state = read_state(model_dir)
    if state is None:
        return None
    try:
        model.load_weights(os.path.join(model_dir, state["weights"]))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"The checkpoint of {model_dir} cannot be read ({error}); use a new "
                         "model_dir.") from None
    return state
