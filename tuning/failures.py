"""Failed trials: a one-line reason in the log, the report and the trial's folder.

A trial fails when its training diverges (`training.trainer.TrainingDiverged`) or raises any
other error (out of memory, a point the trainer refuses, ...). It is then marked `FAILED` and
never retried, neither in this search nor when the search is rerun: with deterministic ops
the same point fails the same way again, and each retry would cost a trial. KerasTuner's
default of printing the traceback and stopping after three consecutive failures is replaced
by one log line per failure (`tuning.kt_adapter.no_keras_tuner_tracebacks`); the traceback is
kept in the trial's `failure.txt`.

A trial stopped by SIGINT / SIGTERM (`training.trainer.TrainingInterrupted`) has not failed:
the search stops with `SearchInterrupted`, and rerunning it resumes that trial from its
checkpoint.
"""

import os
from typing import Optional

import keras_tuner

FAILURE_FILE = "failure.txt"
_MAX_REASON = 400  # TensorFlow's errors carry pages of graph context after their first line


class SearchInterrupted(keras_tuner.errors.FatalError):
    """SIGINT or SIGTERM stopped a trial after saving its checkpoint; the search stops too.

    Attributes:
        trial_id: str. The interrupted trial; rerunning the search resumes it.
        exit_code: int. What a shell reports for a process the signal ended (130, 143).
    """

    def __init__(self, message, trial_id, exit_code):
        super().__init__(message)
        self.trial_id = trial_id
        self.exit_code = exit_code


def reason(error: BaseException) -> str:
    """The failure in one line: a divergence as the first sentence of the trainer's message
    (where and what; the rest is advice for a single run), another error as
    `Type: first line of its message`."""
    from training.trainer import TrainingDiverged

    text = str(error).strip()
    if isinstance(error, TrainingDiverged):
        first, stop, _ = " ".join(text.split()).partition(". ")
        return first + stop.strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first if len(first) <= _MAX_REASON else first[:_MAX_REASON - 3] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def record(trial_dir: str, why: str, traceback_text: str) -> None:
    """Writes `failure.txt`: the reason on its first line, then the traceback. Whoever ran the
    trial writes it; the report reads it (a worker's trial message does not reach the chief)."""
    os.makedirs(trial_dir, exist_ok=True)
    with open(os.path.join(trial_dir, FAILURE_FILE), "w") as file:
        file.write(f"{why}\n\n{traceback_text}")


def recorded_reason(trial_dir: str) -> Optional[str]:
    """The first line of the trial's `failure.txt`, or `None` without one."""
    try:
        with open(os.path.join(trial_dir, FAILURE_FILE)) as file:
            return file.readline().strip() or None
    except OSError:
        return None

