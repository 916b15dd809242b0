"""Epoch checkpoints of `training.keras_loop`: Keras `.weights.h5` files and a state file.

`model.save_weights` writes the model's and its optimizer's variables (the step counter and the
momentum or Adam moments included) on every backend; `keras_state.json` names the newest such
file and holds what the loop needs to go on: the epoch, the step, the history rows and the
training seconds. A new weights file is complete before the state names it, and the one it
replaces is removed after, so a kill at any moment leaves a state that names a whole file.
"""

import glob
import json
import os
from typing import Any, Dict, Optional

from training.outputs import RunDirectoryError, atomic_write, to_json

STATE = "keras_state.json"


def _weights_name(epoch: int) -> str:
    return f"keras_epoch{epoch}.weights.h5"


def save(model_dir: str, model, state: Dict[str, Any]) -> None:
    """Writes `model`'s weights and optimizer after `state["epoch"]` epochs, then the state."""
    name = _weights_name(state["epoch"])
    path = os.path.join(model_dir, name)
    temp = os.path.join(model_dir, "partial." + name)  # save_weights wants .weights.h5
    try:
        model.save_weights(temp, overwrite=True)
        os.replace(temp, path)
        atomic_write(os.path.join(model_dir, STATE), to_json({"weights": name, **state}).encode())
    except OSError as error:
        raise RunDirectoryError(f"Could not write a checkpoint to {model_dir}: "
                                f"{error.strerror or error}.") from None
    for old in glob.glob(os.path.join(model_dir, "*keras_epoch*.weights.h5")):
        if os.path.basename(old) != name:
            os.remove(old)


def load(model_dir: str, model) -> Optional[Dict[str, Any]]:
    """Loads the newest checkpoint's weights and optimizer into `model` (its optimizer built)
    and returns its state, or `None` when `model_dir` has none."""
    path = os.path.join(model_dir, STATE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as file:
            state = json.load(file)
        model.load_weights(os.path.join(model_dir, state["weights"]))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"The checkpoint of {model_dir} cannot be read ({error}); use a new "
                         "model_dir.") from None
    return state
