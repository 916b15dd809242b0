"""TensorFlow as an optional dependency: imported where it is used, not where it is named.

`python -m training.fit --backend=jax` (or torch) must get through the package's imports on a
machine without TensorFlow (`pip install keras-resnets[jax]`), so the modules that the Keras
loop shares with the TensorFlow loop (`training.runtime`, `training.outputs`) name TensorFlow
through `tensorflow`, a module object that imports it on its first attribute access, as Keras'
own `keras.src.utils.module_utils.LazyModule` does for its optional packages.
"""

import importlib
import sys


class LazyModule:
    """A module imported on the first attribute access: `LazyModule("tensorflow").constant`.

    Args:
        name: str. The module's import name.
    """

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self):
        return f"<LazyModule {self._name!r} ({'' if self._module else 'not '}imported)>"


tensorflow = LazyModule("tensorflow")


def tensorflow_available() -> bool:
    """Whether `import tensorflow` works here (it is imported to find out)."""
    if "tensorflow" in sys.modules:
        return True
    try:
        importlib.import_module("tensorflow")
    except ImportError:
        return False
    return True
