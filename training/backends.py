"""Which Keras backend a run uses, chosen before Keras is imported, and what it cannot do.

Keras 3 reads `KERAS_BACKEND` once, when it is first imported
(https://keras.io/getting_started/#configuring-your-backend), so `--backend` of
`python -m training.fit` and `python -m training.evaluate` sets that variable before anything
imports Keras. TensorFlow keeps the package's custom loop (`training.trainer`, the one that works
under every tf.distribute strategy); JAX and PyTorch train with Keras' own `model.fit`
(`training.keras_loop`). Settings that exist only on TensorFlow are refused on the others by
`check_settings`, one line each, before any work is done.
"""

import importlib.util
import os
import sys
from typing import Optional

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
# What each backend needs installed (the JAX CPU wheel: pip install "jax[cpu]").
_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# tf.distribute strategies that have no counterpart in Keras' own fit on JAX / PyTorch.
_TF_STRATEGIES = ("mirrored", "multi_worker", "tpu")
# Exports that `training.export` writes with TensorFlow's converters from a TensorFlow model.
_TF_EXPORTS = ("saved_model", "onnx", "litert")


def default_backend() -> str:
    """`KERAS_BACKEND` when it is set (and valid), else `"tensorflow"`."""
    backend = os.environ.get("KERAS_BACKEND") or DEFAULT
    if backend not in BACKENDS:
        raise ValueError(f"KERAS_BACKEND must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    return backend


def select(backend: Optional[str] = None) -> str:
    """Makes `backend` (default: `default_backend()`) the Keras backend of this process and
    returns its name.

    Args:
        backend: str or `None`. `"tensorflow"`, `"jax"` or `"torch"`.

    Returns:
        The backend's name.

    Raises:
        ValueError: an unknown or uninstalled backend, or Keras was already imported with
            another one (the backend cannot change once Keras is loaded).
    """
    if backend is None:
        backend = default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != backend:
        raise ValueError(f"backend={backend!r}, but Keras was already imported with the "
                         f"{keras.backend.backend()!r} backend; set KERAS_BACKEND before "
                         "importing Keras.")
    if keras is None and importlib.util.find_spec(_PACKAGES[backend]) is None:
        raise ValueError(f"backend={backend!r} needs the {_PACKAGES[backend]} package, which is "
                         "not installed here.")
    os.environ["KERAS_BACKEND"] = backend
    return backend


def for_backend(config, backend: str, export_format_given: bool = True):
    """`config` checked for `backend` (`check_settings`); off TensorFlow, a run that did not
    choose its exports writes `model.keras` only (the default also writes a SavedModel, which
    needs a TensorFlow model)."""
    if backend != "tensorflow" and not export_format_given:
        config = config.replace(export_format="keras")
    check_settings(config, backend)
    return config


def check_settings(config, backend: str) -> None:
    """Raises one `ValueError` naming the first setting of `config` (an
    `training.config.ExperimentConfig`) that cannot apply on `backend`; nothing on TensorFlow.
    """
    if backend == "tensorflow":
        return
    from training import jax_distribution

    jax_distribution.check_settings(config.runtime, backend)  # processes, TF_CONFIG
    runtime = config.runtime
    if runtime.strategy in _TF_STRATEGIES:
        raise ValueError(f"strategy={runtime.strategy!r} is a tf.distribute strategy and exists "
                         f"only on the tensorflow backend; on {backend} use strategy='auto' "
                         "or 'one_device'.")
    if runtime.cpu_devices:
        raise ValueError(f"cpu_devices={runtime.cpu_devices} splits the CPU into TensorFlow "
                         f"logical devices and exists only on the tensorflow backend; on "
                         f"{backend} leave it 0.")
    if runtime.save_model and runtime.model_dir:
        tf_only = [name for name in runtime.export_format if name in _TF_EXPORTS]
        if tf_only:
            raise ValueError(f"export_format={','.join(runtime.export_format)!r}: "
                             f"{', '.join(tf_only)} is written from a TensorFlow model and "
                             f"exists only on the tensorflow backend; on {backend} use "
                             "export_format='keras' (model.keras loads on every backend).")


def define_flag(flag_values=None) -> None:
    """Defines `--backend` (default: `KERAS_BACKEND`, else tensorflow) in `flag_values`."""
    from absl import flags

    flags.DEFINE_enum("backend", None, list(BACKENDS),
                      "The Keras backend: tensorflow (the custom loop, every tf.distribute "
                      "strategy), jax or torch (Keras' model.fit). Default: KERAS_BACKEND, else "
                      "tensorflow.",
                      flag_values=flags.FLAGS if flag_values is None else flag_values)
