"""The one module that touches KerasTuner's private API, for the versions `SUPPORTED` names.

A search needs three things KerasTuner offers no public API for:

- Oracles that propose only points a filter admits (the compute budget, `tuning.budget`): a
  refused point is marked as tried so it is never proposed again (`_tried_so_far`,
  `_compute_values_hash`), random draws go through `_random_values`, and a refused Bayesian
  proposal is replaced by a random one (`_random_populate_space`).
- A reload that trusts a trial's own `trial.json` (`_retry_queue`, `end_order`): KerasTuner
  writes an ended trial's `trial.json` before `oracle.json`, whose copy still lists the trial
  as ongoing, so a kill in between would make the rerun train a finished trial again.
- Seed 0 as a seed: KerasTuner reads a falsy seed as "draw one at random" (`seed`,
  `_seed_state`, the Bayesian oracle's `_random_state` and `gpr`).
- Silence for the traceback KerasTuner prints for every failed trial while its
  `keras_tuner.src.config.DEBUG` is set (the default; there is no public switch).

Private names may change in any release, so importing this module refuses a KerasTuner
outside `SUPPORTED` (also pinned in setup.py): the code below was read against keras-tuner
1.4.7's source and tested with 1.4.8, whose oracle and tuner code is the same.
"""

import contextlib
from typing import Dict, Optional

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module
from packaging.specifiers import SpecifierSet

SUPPORTED = ">=1.4.7,<1.5"


def check_version(version: Optional[str] = None) -> None:
    """Raise `RuntimeError` unless `version` (by default the installed KerasTuner's) is in
    `SUPPORTED`."""
    version = version or keras_tuner.__version__
    if version not in SpecifierSet(SUPPORTED):
        raise RuntimeError(
            f"tuning needs keras-tuner{SUPPORTED}; found keras-tuner {version}. The search uses "
            "private parts of KerasTuner that change between releases (tuning/kt_adapter.py); "
            f"install a supported version: pip install 'keras-tuner{SUPPORTED}'."
        )


check_version()


class FilteredOracle:
    """Mixin for a KerasTuner oracle: it proposes only points `admits(values)` accepts, never
    proposes a refused point again, and reloads a trial whose `trial.json` says it ended as
    ended.

    Args:
        max_draws: int. Random draws tried per proposal before the space counts as exhausted
            (the oracle then ends the search). Defaults to `1000`.
        **kwargs: the arguments of the KerasTuner oracle it is mixed into.
    """

    def __init__(self, *, max_draws: int = 1000, seed: Optional[int] = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_draws = max_draws
        if seed == 0:  # KerasTuner takes `seed or random.randint(1, 10000)`: 0 would be random
            self.seed = self._seed_state = 0
            if hasattr(self, "_random_state"):  # the Bayesian oracle's
                self._random_state = np.random.RandomState(0)
                self.gpr.random_state = 0

    def admits(self, values: Dict[str, object]) -> bool:
        """Whether the point `values` may become a trial; every point by default."""
        return True

    def _admit(self, values) -> bool:
        if self.admits(values):
            return True
        self._tried_so_far.add(self._compute_values_hash(values))  # never propose it again
        return False

    def _random_values(self):
        for _ in range(self.max_draws):
            values = super()._random_values()
            if values is None or self._admit(values):
                return values
        return None  # the admitted space is exhausted

    def reload(self):
        super().reload()
        ended = (trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.FAILED)
        for trial_id in [t for t in self._retry_queue if self.trials[t].status in ended]:
            self._retry_queue.remove(trial_id)
            if trial_id not in self.end_order:
                self.end_order.append(trial_id)


class RandomSearchOracle(FilteredOracle, keras_tuner.oracles.RandomSearchOracle):
    """Random search over the admitted points."""


class HyperbandOracle(FilteredOracle, keras_tuner.oracles.HyperbandOracle):
    """Hyperband over the admitted points (its candidates are drawn by `_random_values`)."""


class BayesianOptimizationOracle(FilteredOracle,
                                 keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation over the admitted points: a proposal of the Gaussian process that
    is refused is replaced by a random admitted point."""

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response["status"] == trial_module.TrialStatus.RUNNING and not self._admit(
                response["values"]):
            return self._random_populate_space()
        return response


@contextlib.contextmanager
def no_keras_tuner_tracebacks():
    """Inside this block KerasTuner prints no traceback for a failed trial (the search prints
    its own line, `tuning.failures`)."""
    from keras_tuner.src import config

    before = config.DEBUG
    config.DEBUG = False
    try:
        yield
    finally:
        config.DEBUG = before
