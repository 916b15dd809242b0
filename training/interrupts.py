"""How a training run stops early: a diverged loss, SIGINT / SIGTERM, an unreadable image."""

import contextlib
import signal
import sys
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


class StopSignals:
    """The SIGINT / SIGTERM of a run's `fit`, for one process or several.

    `receive` is the signal handler. With one process it stops the run after the current step
    (`model.stop_training`); with several, where they agree: checkpoints are collective, so all
    must stop after the same step, and a signal may reach only some of them. Every process
    calls `stops()` at the same points (after every step, at the end of an epoch), which
    asks `agree` and says whether the run stops there.

    Args:
        model: `keras.Model` being trained.
        processes: int. Processes (workers) of the run.
        agree: called as `agree(received)` with the signal this process received (or `None`);
            returns the one every process agrees to stop on, or `None` (with several
            processes, a collective).

    Attributes:
        signum: the signal the run stops on, once `stops()` says so; else `None`.
    """

    def __init__(self, model, processes: int, agree):
        self.model, self.processes, self._agree = model, processes, agree
        self.received = self.signum = None

    def receive(self, signum) -> None:
        """The handler of `interruptible`."""
        from training import report

        self.received = signum
        if self.processes == 1:
            self.model.stop_training = True
        print(report.interrupt_notice(signum), file=sys.stderr, flush=True)

    def stops(self) -> bool:
        """Whether the run stops for a signal (every process gets the same answer)."""
        if self.signum is None:
            self.signum = self._agree(self.received)
        return self.signum is not None


@contextlib.contextmanager
def interruptible(handler):
    """Routes the first SIGINT / SIGTERM to `handler(signum)` and restores the previous
    handlers on exit; a repeated signal gets the previous handler (Ctrl-C twice stops at
    once). Signal handlers can only be set from the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
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
