"""A compute budget for searches: over-budget points are rejected before they become trials.

The oracles below propose only points whose parameters and multiply-adds fit the budget. A
rejected point never becomes a KerasTuner trial (so it is neither trained nor counted against
`max_trials` or as a failure), and it is remembered so it is not proposed again.
"""

import dataclasses
import sys
from typing import Dict, List, Optional

import keras_tuner
from keras_tuner import Objective
from keras_tuner.engine import trial as trial_module

import keras_resnets

OBJECTIVE = Objective("val_error", direction="min")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Upper bounds on a candidate's cost.

    Args:
        max_params: int. Most trainable parameters. `None` is unbounded. Defaults to `None`.
        max_flops: int. Most multiply-adds per image (the papers' FLOPs). `None` is unbounded.
            Defaults to `None`.
    """

    max_params: Optional[int] = None
    max_flops: Optional[int] = None

    def __post_init__(self):
        for name in ("max_params", "max_flops"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None; got {value!r}.")

    def admits(self, cost: keras_resnets.ModelProfile) -> bool:
        return ((self.max_params is None or cost.trainable_params <= self.max_params)
                and (self.max_flops is None or cost.macs <= self.max_flops))

    def describe(self) -> str:
        parts = [f"max_params={self.max_params:,}" if self.max_params else "",
                 f"max_flops={self.max_flops:,}" if self.max_flops else ""]
        return ", ".join(p for p in parts if p) or "no budget"


class CostModel:
    """Parameters and multiply-adds of a point of a `ResNetHyperModel`, built once per point."""

    def __init__(self, hypermodel):
        self.hypermodel = hypermodel
        self._costs: Dict[str, keras_resnets.ModelProfile] = {}

    def __call__(self, values: Dict[str, object]) -> keras_resnets.ModelProfile:
        arguments = self.hypermodel.architecture(self.hypermodel.values_to_hp(values))
        key = repr(sorted(arguments.items()))
        if key not in self._costs:
            model = keras_resnets.ResNet(**arguments, classes=self.hypermodel.classes,
                                         input_shape=self.hypermodel.input_shape)
            self._costs[key] = keras_resnets.profile(model)
        return self._costs[key]


def check_feasible(space, cost_model: CostModel, budget: Budget):
    """Raise a clear error when not even the cheapest point of `space` fits `budget`."""
    cheapest = min((cost_model(values) for values in space.smallest_candidates()),
                   key=lambda cost: (cost.macs, cost.trainable_params))
    if not budget.admits(cheapest):
        raise ValueError(
            f"The budget ({budget.describe()}) is below the smallest model of the search space "
            f"({cheapest.trainable_params:,} parameters, {cheapest.macs:,} multiply-adds); "
            "raise the budget or add smaller choices."
        )


class _BudgetMixin:
    """Makes a KerasTuner oracle propose only points within a budget (and never retrain a
    trial that ended before a kill)."""

    def __init__(self, *, cost_model: CostModel, budget: Budget, max_draws: int = 1000,
                 **kwargs):
        super().__init__(**kwargs)
        self.cost_model = cost_model
        self.budget = budget
        self.max_draws = max_draws
        self.rejected: List[Dict[str, object]] = []

    def admits(self, values) -> bool:
        if self.budget.admits(self.cost_model(values)):
            return True
        self.rejected.append(dict(values))
        self._tried_so_far.add(self._compute_values_hash(values))  # never propose it again
        return False

    def _random_values(self):
        for _ in range(self.max_draws):
            values = super()._random_values()
            if values is None or self.admits(values):
                return values
        return None  # the space within budget is exhausted

    def get_state(self):
        return {**super().get_state(), "rejected": self.rejected}

    def reload(self):
        super().reload()
        # KerasTuner writes an ended trial's trial.json before oracle.json, and that oracle.json
        # still lists the trial as ongoing: a kill in between would make the rerun retrain a
        # finished trial. A trial's own file is the truth about whether it ended.
        ended = (trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.FAILED)
        for trial_id in [t for t in self._retry_queue if self.trials[t].status in ended]:
            self._retry_queue.remove(trial_id)
            if trial_id not in self.end_order:
                self.end_order.append(trial_id)

    def set_state(self, state):
        super().set_state(state)
        self.rejected = state.get("rejected", [])


class RandomSearchOracle(_BudgetMixin, keras_tuner.oracles.RandomSearchOracle):
    """Random search within a budget."""


class HyperbandOracle(_BudgetMixin, keras_tuner.oracles.HyperbandOracle):
    """Hyperband within a budget (its candidates are drawn by `_random_values`)."""


class BayesianOptimizationOracle(_BudgetMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation within a budget: an over-budget proposal of the Gaussian process
    is rejected and replaced by a random point within the budget."""

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        if response["status"] == trial_module.TrialStatus.RUNNING and not self.admits(
                response["values"]):
            return self._random_populate_space()
        return response


ORACLES = {
    "random": RandomSearchOracle,
    "bayesian": BayesianOptimizationOracle,
    "hyperband": HyperbandOracle,
}


def make_oracle(tuner: str, cost_model: CostModel, budget: Budget, *, max_trials: int,
                max_epochs: int, seed: int = 0, **kwargs):
    """The budgeted oracle for `tuner` (`"random"`, `"bayesian"` or `"hyperband"`).

    `max_trials` bounds random and Bayesian searches; Hyperband is bounded by `max_epochs` (the
    most epochs one model trains) and its own bracket arithmetic, as in KerasTuner.
    """
    if tuner not in ORACLES:
        raise ValueError(f"tuner must be one of {list(ORACLES)}; got {tuner!r}.")
    # Failed trials are final and the search goes on to its budget (tuning.failures): no
    # retries, and no stop after KerasTuner's 3 consecutive failures (it raises before saving
    # the failed trial, so a rerun would run that trial again).
    kwargs = {"max_retries_per_trial": 0, "max_consecutive_failed_trials": sys.maxsize,
              **kwargs}
    common = dict(cost_model=cost_model, budget=budget, objective=OBJECTIVE, seed=seed, **kwargs)
    if tuner == "hyperband":
        return HyperbandOracle(max_epochs=max_epochs, **common)
    return ORACLES[tuner](max_trials=max_trials, **common)
