"""tuning/kt_adapter.py: the supported KerasTuner versions, and the private API it relies on."""

import ast
import pathlib
import re

import keras_tuner
import pytest

from tests.conftest import REPO_ROOT
from tuning import kt_adapter

# What the adapter reaches into, as it appears in code; no other module of tuning/ may.
PRIVATE = ("keras_tuner.src", "_tried_so_far", "_compute_values_hash", "_random_values",
           "_random_populate_space", "_retry_queue", "end_order", "config.DEBUG")


def test_the_installed_keras_tuner_is_supported_and_setup_pins_the_same_range():
    kt_adapter.check_version()  # fails, with the message below, on an unsupported version
    setup = pathlib.Path(REPO_ROOT, "setup.py").read_text()
    assert f'"keras-tuner{kt_adapter.SUPPORTED}"' in setup


@pytest.mark.parametrize("version", ["1.3.5", "1.4.6", "1.5.0"])
def test_an_unsupported_keras_tuner_is_refused_with_a_clear_message(version, monkeypatch):
    monkeypatch.setattr(keras_tuner, "__version__", version)
    with pytest.raises(RuntimeError) as error:
        kt_adapter.check_version()
    assert str(error.value) == (
        f"tuning needs keras-tuner>=1.4.7,<1.5; found keras-tuner {version}. The search uses "
        "private parts of KerasTuner that change between releases (tuning/kt_adapter.py); "
        "install a supported version: pip install 'keras-tuner>=1.4.7,<1.5'.")


def test_the_private_api_the_adapter_uses_exists():
    oracle = kt_adapter.BayesianOptimizationOracle(
        objective=keras_tuner.Objective("val_error", "min"), max_trials=1)
    for name in ("_tried_so_far", "_compute_values_hash", "_random_values",
                 "_random_populate_space", "_retry_queue", "end_order"):
        assert hasattr(oracle, name), f"KerasTuner {keras_tuner.__version__} lacks {name}"
    from keras_tuner.src import config

    assert isinstance(config.DEBUG, bool)


def test_no_keras_tuner_tracebacks_restores_the_setting():
    from keras_tuner.src import config

    before = config.DEBUG
    with pytest.raises(KeyError):
        with kt_adapter.no_keras_tuner_tracebacks():
            assert config.DEBUG is False
            raise KeyError("a failing search")
    assert config.DEBUG is before


class _EvenOnly(kt_adapter.RandomSearchOracle):
    def admits(self, values):
        return values["n"] % 2 == 0


def test_a_filtered_oracle_proposes_admitted_points_only_and_refused_ones_never_again(tmp_path):
    oracle = _EvenOnly(objective=keras_tuner.Objective("val_error", "min"), max_trials=10,
                       seed=3)
    oracle.hyperparameters = keras_tuner.HyperParameters()
    oracle.hyperparameters.Int("n", 0, 5)
    oracle._set_project_dir(str(tmp_path), "project")
    proposed = []
    for _ in range(5):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        proposed.append(trial.hyperparameters.values["n"])
        oracle.update_trial(trial.trial_id, {"val_error": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert sorted(proposed) == [0, 2, 4]  # then the admitted space is exhausted
    assert trial.status == "STOPPED"


def _proposals(oracle_class, tmp_path, seed, **kwargs):
    oracle = oracle_class(objective=keras_tuner.Objective("val_error", "min"), seed=seed,
                          **kwargs)
    oracle.hyperparameters = keras_tuner.HyperParameters()
    oracle.hyperparameters.Int("n", 0, 10_000)
    oracle._set_project_dir(str(tmp_path), f"project{len(list(tmp_path.iterdir()))}")
    trial = oracle.create_trial("tuner0")
    return oracle.seed, trial.hyperparameters.values["n"]


@pytest.mark.parametrize("oracle_class, kwargs", [
    (kt_adapter.RandomSearchOracle, {"max_trials": 3}),
    (kt_adapter.BayesianOptimizationOracle, {"max_trials": 3}),
    (kt_adapter.HyperbandOracle, {"max_epochs": 3}),
])
def test_seed_zero_is_a_seed_not_a_random_one(oracle_class, kwargs, tmp_path):
    # KerasTuner alone would draw a random seed for seed=0 (`seed or random.randint(...)`).
    first = _proposals(oracle_class, tmp_path, 0, **kwargs)
    assert first[0] == 0
    assert [_proposals(oracle_class, tmp_path, 0, **kwargs) for _ in range(3)] == [first] * 3


def _tuning_modules():
    return sorted(pathlib.Path(REPO_ROOT, "tuning").glob("*.py"))


def test_only_the_adapter_touches_keras_tuner_private_api():
    for path in _tuning_modules():
        if path.name == "kt_adapter.py":
            continue
        code = path.read_text()
        used = [name for name in PRIVATE if re.search(rf"\b{re.escape(name)}\b", code)]
        assert not used, f"{path.name} uses KerasTuner's private {used}: move it to kt_adapter"


def test_the_search_command_does_not_import_the_fit_command():
    for path in _tuning_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "training":
                assert "fit" not in [alias.name for alias in node.names], path.name
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                assert "training.fit" not in names, path.name
