"""Checkpoints of `training.keras_loop`: Keras `.weights.h5` files and a state file.

`model.save_weights` writes the model's and its optimizer's variables (the step counter, the
momentum or Adam moments, and the weight average of `ema_decay`, `training.keras_ema`) on every
backend; `keras_state.json` names the newest such file and holds what the loop needs to go on:
the epoch, the batch within it, the step, the epoch's running metric sums, the history rows and
the clocks. A new weights file is written under a `partial.` name and renamed when whole, the
state that names it is written (atomically) after that, and the file it replaces is removed
last, so a kill at any moment leaves a state that names a whole file of the same step.
"""

import glob
import json
import os
from typing import Any, Dict, Optional

from training.outputs import RunDirectoryError, atomic_write, to_json

STATE = "keras_state.json"


def weights_name(step: int) -> str:
    """The weights file of the checkpoint after `step` updates."""
    return f"keras_step{step}.weights.h5"


def save(model_dir: str, model, state: Dict[str, Any]) -> str:
    """Writes `model`'s weights and optimizer after `state["step"]` updates, then the state;
    returns the weights file's name."""
    name = weights_name(state["step"])
    path = os.path.join(model_dir, name)
    temp = os.path.join(model_dir, "partial." + name)  # save_weights wants .weights.h5
    try:
        model.save_weights(temp, overwrite=True)
        os.replace(temp, path)
        atomic_write(os.path.join(model_dir, STATE), to_json({"weights": name, **state}).encode())
    except OSError as error:
        raise RunDirectoryError(f"Could not write a checkpoint to {model_dir}: "
                                f"{error.strerror or error}.") from None
    for old in glob.glob(os.path.join(model_dir, "*keras_step*.weights.h5")):
        if os.path.basename(old) != name:
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
