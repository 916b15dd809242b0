"""A compute budget for searches: over-budget points are rejected before they become trials.

The oracles below propose only points whose parameters and multiply-adds fit the budget. A
rejected point never becomes a KerasTuner trial (so it is neither trained nor counted against
`max_trials` or as a failure), and it is remembered so it is not proposed again.
"""

import dataclasses
import sys
from typing import Dict, List, Optional

from keras_tuner import Objective

import keras_resnets
from keras_resnets import validate
from keras_resnets.builder import ARCHITECTURE_ARGUMENTS
from tuning import kt_adapter

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
            if value is not None:
                validate.positive(name, value, suffix=" or None")

    def admits(self, cost: keras_resnets.ModelProfile) -> bool:
        return ((self.max_params is None or cost.trainable_params <= self.max_params)
                and (self.max_flops is None or cost.macs <= self.max_flops))

    def describe(self) -> str:
        parts = [f"max_params={self.max_params:,}" if self.max_params else "",
                 f"max_flops={self.max_flops:,}" if self.max_flops else ""]
        return ", ".join(p for p in parts if p) or "no budget"


class CostModel:
    """Parameters and multiply-adds of a point of a `ResNetHyperModel`, computed from its
    architecture (`keras_resnets.architecture_cost`: no model is built)."""

    def __init__(self, hypermodel):
        self.hypermodel = hypermodel
        self._costs: Dict[str, keras_resnets.ModelProfile] = {}

    def __call__(self, values: Dict[str, object]) -> keras_resnets.ModelProfile:
        arguments = self.hypermodel.architecture(self.hypermodel.values_to_hp(values))
        # Layer options such as drop_path_rate change training only, not the cost.
        arguments = {key: value for key, value in arguments.items()
                     if key in ARCHITECTURE_ARGUMENTS}
        key = repr(sorted(arguments.items()))
        if key not in self._costs:
            # The hypermodel's input shape is the pipeline's: channels last.
            self._costs[key] = keras_resnets.architecture_cost(
                keras_resnets.resolve_architecture(**arguments), classes=self.hypermodel.classes,
                input_shape=self.hypermodel.input_shape, data_format="channels_last")
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
    """Makes a filtered KerasTuner oracle (`tuning.kt_adapter`) admit only points within a
    budget, and remember the rejected ones (in its state, so a rerun reports them too)."""

    def __init__(self, *, cost_model: CostModel, budget: Budget, **kwargs):
        super().__init__(**kwargs)
        self.cost_model = cost_model
        self.budget = budget
        self.rejected: List[Dict[str, object]] = []

    def admits(self, values) -> bool:
        if self.budget.admits(self.cost_model(values)):
            return True
        self.rejected.append(dict(values))
        return False

    def get_state(self):
        return {**super().get_state(), "rejected": self.rejected}

    def set_state(self, state):
        super().set_state(state)
        self.rejected = state.get("rejected", [])


class RandomSearchOracle(_BudgetMixin, kt_adapter.RandomSearchOracle):
    """Random search within a budget."""


class HyperbandOracle(_BudgetMixin, kt_adapter.HyperbandOracle):
    """Hyperband within a budget."""


class BayesianOptimizationOracle(_BudgetMixin, kt_adapter.BayesianOptimizationOracle):
    """Bayesian optimisation within a budget: an over-budget proposal of the Gaussian process
    is rejected and replaced by a random point within the budget."""


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
    validate.choice("tuner", tuner, ORACLES)
    # Failed trials are final and the search goes on to its budget (tuning.failures): no
    # retries, and no stop after KerasTuner's 3 consecutive failures (it raises before saving
    # the failed trial, so a rerun would run that trial again).
    kwargs = {"max_retries_per_trial": 0, "max_consecutive_failed_trials": sys.maxsize,
              **kwargs}
    common = dict(cost_model=cost_model, budget=budget, objective=OBJECTIVE, seed=seed, **kwargs)
    if tuner == "hyperband":
        return HyperbandOracle(max_epochs=max_epochs, **common)
    return ORACLES[tuner](max_trials=max_trials, **common)
