"""`training.interrupts.StopSignals`: where the processes of a run stop for SIGINT / SIGTERM."""

import signal
import types

from training.interrupts import StopSignals


def _stop(processes, others=()):
    """A `StopSignals` whose collective sees, in turn, the signals of the other processes in
    `others`; returns it and what this process passed to the collective."""
    calls, others = [], iter(others)

    def agree(received):  # the largest signal number of all processes, as the collectives
        calls.append(received)
        return max(received or 0, next(others, None) or 0) or None

    return StopSignals(types.SimpleNamespace(stop_training=False), processes, agree), calls


def test_one_process_stops_after_the_current_step(capsys):
    stop, calls = _stop(1)
    assert not stop.stops()
    stop.receive(signal.SIGINT)
    assert stop.model.stop_training  # fit ends after this step
    assert stop.stops() and stop.signum == signal.SIGINT
    assert calls == [None, signal.SIGINT]
    assert "SIGINT: stopping after this step" in capsys.readouterr().err


def test_a_process_that_received_nothing_stops_with_the_others():
    stop, calls = _stop(2, [None, signal.SIGTERM])
    assert not stop.stops()
    assert stop.stops() and stop.signum == signal.SIGTERM
    assert stop.stops() and calls == [None, None]  # settled: no further collective


def test_a_signalled_process_of_several_stops_only_where_they_all_ask(capsys):
    stop, calls = _stop(2)
    stop.receive(signal.SIGINT)
    # Not at once: a process that left fit between two of the others' steps would leave
    # them waiting for it.
    assert not stop.model.stop_training
    assert stop.stops() and stop.signum == signal.SIGINT and calls == [signal.SIGINT]
    assert capsys.readouterr().err.count("SIGINT: stopping") == 1
