"""The budget: over-budget points never become trials; infeasible budgets are clear errors."""

import itertools

import keras_tuner
import pytest

import keras_resnets
from tuning.budget import Budget, CostModel, check_feasible, make_oracle
from tuning.hypermodel import ResNetHyperModel, SearchSpace

SPACE = SearchSpace(blocks_per_stage=(1, 2, 3), base_widths=(16, 32), cardinalities=(1, 2),
                    bottleneck_widths=(16, 64))


def _oracle(tuner, budget, tmp_path, max_trials=6):
    hypermodel = ResNetHyperModel(SPACE)
    cost_model = CostModel(hypermodel)
    oracle = make_oracle(tuner, cost_model, budget, max_trials=max_trials, max_epochs=3, seed=1)
    oracle.hyperparameters = keras_tuner.HyperParameters()
    hypermodel.build_space(oracle.hyperparameters)
    oracle._set_project_dir(str(tmp_path), "project")
    return oracle, cost_model


def _run(oracle, trials, error=lambda values: 0.5):
    seen = []
    for _ in range(trials):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        seen.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_error": error(trial.hyperparameters.values)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return seen


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_no_trial_exceeds_the_budget_and_rejections_are_not_trials(tuner, tmp_path):
    budget = Budget(max_flops=60_000_000)
    oracle, cost_model = _oracle(tuner, budget, tmp_path)
    seen = _run(oracle, trials=8, error=lambda v: 1.0 / (1 + v["blocks_per_stage"]))
    assert seen and all(cost_model(values).macs <= 60_000_000 for values in seen)
    assert oracle.rejected, "the space holds over-budget points; some must have been drawn"
    assert all(cost_model(values).macs > 60_000_000 for values in oracle.rejected)
    # A rejected point is no trial, failed or otherwise.
    assert len(oracle.trials) == len(seen)
    assert all(t.status == "COMPLETED" for t in oracle.trials.values())


def test_params_budget(tmp_path):
    oracle, cost_model = _oracle("random", Budget(max_params=300_000), tmp_path)
    seen = _run(oracle, trials=6)
    assert seen and all(cost_model(v).trainable_params <= 300_000 for v in seen)


def test_rejections_survive_a_reload(tmp_path):
    oracle, _ = _oracle("random", Budget(max_flops=60_000_000), tmp_path)
    _run(oracle, trials=4)
    again, _ = _oracle("random", Budget(max_flops=60_000_000), tmp_path)
    again.reload()
    assert again.rejected == oracle.rejected and len(again.trials) == len(oracle.trials)


def test_cost_model_matches_profile():
    hypermodel = ResNetHyperModel(SPACE)
    cost = CostModel(hypermodel)(dict(block="basic", blocks_per_stage=3, base_width=16,
                                      unit="original", shortcut="A"))
    assert cost == keras_resnets.profile(keras_resnets.ResNet20())


POINTS = [
    dict(block="basic", blocks_per_stage=2, base_width=32, unit="full_preactivation",
         shortcut="B"),
    dict(block="bottleneck", blocks_per_stage=1, base_width=16, unit="original", shortcut="A",
         cardinality=2, bottleneck_width=16),
]


@pytest.mark.parametrize("values", POINTS, ids=["basic", "bottleneck"])
def test_cost_model_equals_the_built_models_profile_without_building_it(values, monkeypatch):
    hypermodel = ResNetHyperModel(SPACE, classes=7, input_shape=(24, 24, 1))
    model = keras_resnets.ResNet(**hypermodel.architecture(hypermodel.values_to_hp(values)),
                                 classes=7, input_shape=(24, 24, 1))

    def no_building(*args, **kwargs):
        raise AssertionError("the cost model built a model")

    monkeypatch.setattr(keras_resnets, "ResNet", no_building)
    assert CostModel(hypermodel)(values) == keras_resnets.profile(model)


def _every_point(space):
    for block, n, base, unit, shortcut in itertools.product(
            space.blocks, space.blocks_per_stage, space.base_widths, space.units,
            space.shortcuts):
        common = dict(block=block, blocks_per_stage=n, base_width=base, unit=unit,
                      shortcut=shortcut)
        if block == "basic":
            yield common
        else:
            for c, d in itertools.product(space.cardinalities, space.bottleneck_widths):
                yield dict(common, cardinality=c, bottleneck_width=d)


def test_budget_below_the_smallest_model_is_a_clear_error():
    cost_model = CostModel(ResNetHyperModel(SPACE))
    cheapest = min((cost_model(values) for values in _every_point(SPACE)),
                   key=lambda cost: cost.macs)
    check_feasible(SPACE, cost_model, Budget(max_flops=cheapest.macs))
    with pytest.raises(ValueError, match=(
            r"The budget \(max_flops=%s\) is below the smallest model of the search space "
            r"\(%s parameters, %s multiply-adds\)" % (
                f"{cheapest.macs - 1:,}", f"{cheapest.trainable_params:,}",
                f"{cheapest.macs:,}"))):
        check_feasible(SPACE, cost_model, Budget(max_flops=cheapest.macs - 1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_params=0), r"max_params must be positive or None; got 0"),
    (dict(max_flops=-5), r"max_flops must be positive or None; got -5"),
])
def test_bad_budgets(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


def test_unknown_tuner():
    with pytest.raises(ValueError, match=r"tuner must be one of \['random', 'bayesian', "
                                         r"'hyperband'\]; got 'grid'"):
        make_oracle("grid", None, Budget(), max_trials=1, max_epochs=1)
