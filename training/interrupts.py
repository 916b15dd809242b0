"""How a training run stops early: a diverged loss, SIGINT / SIGTERM, an unreadable image."""

import contextlib
import signal
import threading

from training.image_folders import CorruptImageError

# The signals that stop a run after its current step, the stronger last.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN, infinite or larger than `RuntimeConfig.max_loss`."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run after saving a checkpoint of its last step.

    Attributes:
        signum: int. The signal.
        exit_code: int. What a shell reports for a process the signal ended (130, 143).
    """

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


@contextlib.contextmanager
def interruptible(handler, enabled=True):
    """Routes the first SIGINT / SIGTERM to `handler(signum)` and restores the previous
    handlers on exit; a repeated signal gets the previous handler (Ctrl-C twice stops at
    once). Signal handlers can only be set from the main thread; elsewhere this does nothing."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def on_signal(signum, frame):
        signal.signal(signum, previous[signum])
        handler(signum)

    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def named_input_errors():
    """A corrupt image met while reading stops the input with a long TensorFlow error that
    carries a `training.images.CorruptImageError`; raise that one (it names the files)."""
    import tensorflow as tf  # the TensorFlow loop's errors; the Keras loop runs without it

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        corrupt = CorruptImageError.from_op_error(error)
        if corrupt is None:
            raise
        raise corrupt from None
