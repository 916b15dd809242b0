"""Searches: the tuner that trains each point with `training`, the search settings, the report.

Each trial trains one point of the search space with `training` (its data pipelines, recipes,
mixed precision and strategies) on a validation split carved from train; the test split is
evaluated only for the exported best models. Running a search again resumes it: finished trials
are kept, an interrupted one resumes from its last checkpoint. Distributed searches use
KerasTuner's chief / worker protocol (`role`, `oracle_address`). `python -m tuning.search` is
the command line over `run(SearchConfig(...))`.

A local search or the chief of a distributed one locks its project directory
(`training.dirlock.DirectoryLock`) for the whole search and report: a second run on it stops
before writing anything. Workers share the chief's directory and take no lock. A trial whose
training diverges or raises is one line in the log and a failed row of the report, and the
search goes on (see `tuning.failures`).
"""

import dataclasses
import json
import logging
import os
import shutil
import traceback
from typing import Optional

import keras
import keras_tuner
from keras_tuner.engine import base_tuner

from keras_resnets import validate
from training import config as config_lib
from training.dirlock import LOCK_FILE, DirectoryLock
from training.outputs import atomic_write
from tuning import budget as budget_lib
from tuning import failures, kt_adapter, report
from tuning.hypermodel import ResNetHyperModel
from tuning.space import SearchSpace, TrainingSpace

ROLES = ("local", "chief", "worker")


class _NoRetracingWarnings(logging.Filter):
    """Each trial builds a new model and step function; TensorFlow counts those traces across
    trials and warns about "retracing", which here is expected."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NoRetracingWarnings())


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """A search: the space, the budget, the tuner and the training of each trial.

    Args:
        experiment: `training.config.ExperimentConfig`. The training of every trial (data,
            optimization, runtime); its model is replaced by each point, its length by
            `epochs_per_trial`. Its data must carve a validation split (`validation_images`).
        space: `tuning.space.SearchSpace`. Defaults to `SearchSpace()`.
        training_space: `tuning.space.TrainingSpace`. Defaults to none.
        tuner: str. `"random"`, `"bayesian"` or `"hyperband"`. Defaults to `"random"`.
        max_trials: int. Trials of a random or Bayesian search. Defaults to `10`.
        epochs_per_trial: int. Epochs of each trial (Hyperband's most). Defaults to `10`.
        budget: `tuning.budget.Budget`. Defaults to no budget.
        directory: str. Where searches live. Defaults to `"tuning_runs"`.
        project: str. This search's folder under `directory`. Defaults to `"search"`.
        export_best: int. Export the best N models, with their configs and test error.
            Defaults to `0`.
        seed: int. Seed of the oracle. Defaults to `0`.
    """

    experiment: config_lib.ExperimentConfig
    space: SearchSpace = dataclasses.field(default_factory=SearchSpace)
    training_space: TrainingSpace = dataclasses.field(default_factory=TrainingSpace)
    tuner: str = "random"
    max_trials: int = 10
    epochs_per_trial: int = 10
    budget: budget_lib.Budget = dataclasses.field(default_factory=budget_lib.Budget)
    directory: str = "tuning_runs"
    project: str = "search"
    export_best: int = 0
    seed: int = 0

    def __post_init__(self):
        validate.choice("tuner", self.tuner, budget_lib.ORACLES)
        for name in ("max_trials", "epochs_per_trial"):
            validate.positive_int(name, getattr(self, name))
        validate.non_negative_int("export_best", self.export_best)
        if not self.experiment.data.validation_images:
            raise ValueError(
                "The search needs a validation split carved from train (validation_images > 0); "
                "it never looks at the test split.")
        if self.space.family == "cifar" and self.experiment.data.dataset.startswith("imagenet"):
            raise ValueError("family='cifar' needs small images; use family='imagenet'.")

    @property
    def project_dir(self) -> str:
        return os.path.join(self.directory, self.project)

    def to_dict(self):
        return {
            "experiment": self.experiment.to_dict(),
            "space": self.space.to_dict(),
            "training_space": dataclasses.asdict(self.training_space),
            "budget": dataclasses.asdict(self.budget),
            **{k: getattr(self, k) for k in ("tuner", "max_trials", "epochs_per_trial", "seed")},
        }


class ResNetTuner(base_tuner.BaseTuner):
    """Trains each trial with `training.trainer` and reports validation error and cost.

    `pipeline` is the `training.data.Pipeline` of the search's data, shared by every trial
    (`build_tuner` passes the one it read the data's shape from); without one, the first trial
    builds it.
    """

    def __init__(self, oracle, hypermodel, search: SearchConfig, cost_model, lock=None,
                 pipeline=None, **kwargs):
        self.search_config = search
        self.cost_model = cost_model
        self.lock = lock  # the project directory's, held until close()
        self._pipeline = pipeline
        self._failures = {}  # trial id -> reason, until the trial is ended
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def close(self) -> None:
        """Releases the project directory's lock (if this tuner holds it)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def search(self, *fit_args, **fit_kwargs):
        with kt_adapter.no_keras_tuner_tracebacks():
            super().search(*fit_args, **fit_kwargs)

    def trial_config(self, trial) -> config_lib.ExperimentConfig:
        """The training of a trial: the template with the trial's model and choices."""
        hp = trial.hyperparameters
        epochs = hp.values.get("tuner/epochs", self.search_config.epochs_per_trial)
        return self.search_config.experiment.replace(
            model=config_lib.CUSTOM_MODEL,
            model_overrides=self.hypermodel.architecture(hp),
            epochs=int(epochs),
            model_dir=self.train_dir(trial.trial_id),
            evaluate_test=False,
            save_model=True,
            **self.hypermodel.training(hp),
        )

    def train_dir(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), "train")

    def run_trial(self, trial, *args, **kwargs):
        """Trains the trial's point; a failure becomes `FailedTrialError` (never retried) with
        a one-line reason, an interruption `failures.SearchInterrupted` (the search stops)."""
        from training.trainer import TrainingInterrupted

        try:
            return self._train(trial)
        except keras_tuner.errors.FatalError:
            raise
        except TrainingInterrupted as error:
            raise failures.SearchInterrupted(
                f"Trial {trial.trial_id}: {error} Rerun the search to resume it.",
                trial.trial_id, error.exit_code) from error
        except Exception as error:
            why = failures.reason(error)
            failures.record(self.get_trial_dir(trial.trial_id), why, traceback.format_exc())
            self._failures[trial.trial_id] = why
            point = self.hypermodel.describe(trial.hyperparameters.values)
            print(f"Trial {trial.trial_id} ({point}) failed: {why}", flush=True)
            raise keras_tuner.errors.FailedTrialError(why) from None

    def on_trial_end(self, trial):
        if trial.trial_id in self._failures:  # KerasTuner set the message to a traceback
            trial.message = self._failures.pop(trial.trial_id)
        super().on_trial_end(trial)

    def _train(self, trial):
        from training import trainer
        from training.data import Pipeline

        keras.backend.clear_session()
        experiment = self.trial_config(trial)
        os.makedirs(self.get_trial_dir(trial.trial_id), exist_ok=True)
        with open(os.path.join(self.get_trial_dir(trial.trial_id), "runs.txt"), "a") as file:
            file.write(f"{self.tuner_id}\n")  # who ran it (a resumed trial adds a line)
        parent = trial.hyperparameters.values.get("tuner/trial_id")
        if parent and not os.path.exists(experiment.runtime.model_dir):
            continue_training(self.train_dir(parent), experiment.runtime.model_dir)
        if self._pipeline is None:
            self._pipeline = Pipeline(experiment.data)
        result = trainer.run(experiment, pipeline=self._pipeline)
        cost = self.cost_model(trial.hyperparameters.values)
        return {
            "val_error": float(result.results["final_validation_error"]),
            "params": float(cost.trainable_params),
            "macs": float(cost.macs),
            "wall_time": float(result.results["wall_seconds"]),
        }


def continue_training(parent_dir: str, model_dir: str) -> None:
    """Hyperband: a promoted trial continues from a copy of its parent's run directory,
    without the parent's lock file (a killed run leaves one; it is not the child's).

    The copy is made under a temporary name and renamed when whole: a search resumed after a
    kill during the copy (which skips the copy once `model_dir` exists) then never trains from
    a partial one. A partial copy left by such a kill is replaced."""
    partial = model_dir.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(parent_dir, partial, ignore=shutil.ignore_patterns(LOCK_FILE))
    os.replace(partial, model_dir)


@dataclasses.dataclass
class SearchResult:
    """What `run` returns (on the chief or a local search; workers get `None` tables).

    `records` holds every finished trial: the completed ones best first, then the failed ones.
    """

    records: list
    tables: Optional[dict] = None
    plot: Optional[str] = None
    exported: Optional[list] = None

    @property
    def completed(self) -> list:
        return [record for record in self.records if record.completed]

    @property
    def failed(self) -> list:
        return [record for record in self.records if not record.completed]

    def summary(self) -> str:
        """`12 trials: 10 completed, 2 failed`."""
        return report.summary(self.records)


def _distributed_role(role: str, oracle_address: Optional[str], tuner_id: Optional[str]):
    """Sets KerasTuner's `KERASTUNER_*` variables for `role` (they may also come preset)."""
    validate.choice("role", role, ROLES)
    if role == "local":
        return
    if oracle_address:
        host, _, port = oracle_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"oracle_address must be host:port; got {oracle_address!r}.")
        os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"] = host, port
    if "KERASTUNER_ORACLE_IP" not in os.environ or "KERASTUNER_ORACLE_PORT" not in os.environ:
        raise ValueError(f"role={role!r} needs oracle_address=host:port (or the "
                         "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT variables).")
    if role == "chief":
        os.environ["KERASTUNER_TUNER_ID"] = "chief"
    else:
        tuner_id = tuner_id or os.environ.get("KERASTUNER_TUNER_ID") or f"worker-{os.getpid()}"
        if "chief" in tuner_id:
            raise ValueError(f"A worker's tuner_id may not contain 'chief'; got {tuner_id!r}.")
        os.environ["KERASTUNER_TUNER_ID"] = tuner_id


def _check_same_search(search: SearchConfig):
    """Rerunning resumes a search; a different search in the same folder is refused."""
    path = os.path.join(search.project_dir, "search_config.json")
    settings = json.loads(json.dumps(search.to_dict()))
    if os.path.exists(path):
        with open(path) as file:
            before = json.load(file)
        if before != settings:
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise ValueError(
                f"{search.project_dir} holds a search with other settings ({', '.join(changed)}"
                "); rerun it unchanged to resume, or choose another project.")
        return
    os.makedirs(search.project_dir, exist_ok=True)
    atomic_write(path, json.dumps(settings, indent=2).encode())


def build_tuner(search: SearchConfig, role: str = "local", oracle_address=None, tuner_id=None
                ) -> ResNetTuner:
    """The tuner of a search (resuming what its directory holds).

    A local search or the chief locks the project directory before writing anything there;
    use the tuner in a `with` block (or call `close()`) to release it. Workers take no lock.

    Raises:
        ValueError: bad settings, a different search in the directory, or the directory is
            locked by another live run (`training.dirlock.DirectoryLocked`, naming it).
    """
    from training.data import Pipeline

    _distributed_role(role, oracle_address, tuner_id)
    pipeline = Pipeline(search.experiment.data)  # every trial trains on it
    info = pipeline.info
    hypermodel = ResNetHyperModel(search.space, search.training_space, classes=info.num_classes,
                                  input_shape=info.image_shape)
    cost_model = budget_lib.CostModel(hypermodel)
    lock = None
    if role != "worker":
        budget_lib.check_feasible(search.space, cost_model, search.budget)
        lock = DirectoryLock(search.project_dir, argument="directory").acquire()
    try:
        if role != "worker":
            _check_same_search(search)
        oracle = budget_lib.make_oracle(search.tuner, cost_model, search.budget,
                                        max_trials=search.max_trials,
                                        max_epochs=search.epochs_per_trial, seed=search.seed)
        return ResNetTuner(oracle, hypermodel, search, cost_model, lock=lock, pipeline=pipeline,
                           directory=search.directory, project_name=search.project)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def run(search: SearchConfig, role: str = "local", oracle_address=None, tuner_id=None
        ) -> SearchResult:
    """Runs (or resumes) a search; the chief or a local search then writes the report.

    Raises:
        failures.SearchInterrupted: SIGINT / SIGTERM stopped a trial (rerun to resume).
    """
    with build_tuner(search, role, oracle_address, tuner_id) as tuner:
        tuner.search()
        if role == "worker":
            return SearchResult(records=[])
        return write_report(tuner, search)


def write_report(tuner: ResNetTuner, search: SearchConfig) -> SearchResult:
    """The results table, the plot and the exported best models of a finished search. Failed
    trials are rows of the table; the plot and the exports hold completed trials only (no plot
    when none completed)."""
    records = report.collect(tuner.oracle, tuner.hypermodel, search.project_dir,
                             tuner.cost_model)
    result = SearchResult(records)
    rejected = len(getattr(tuner.oracle, "rejected", []))
    result.tables = report.write_tables(records, search.project_dir, rejected=rejected)
    if result.completed:
        result.plot = report.plot(records, os.path.join(search.project_dir, "results.png"),
                                  title=f"{search.project}: validation error against cost")
    result.exported = export_best(tuner, result.completed[: search.export_best], search)
    return result


def export_best(tuner: ResNetTuner, records, search: SearchConfig):
    """Copy the best models as `.keras` files with configs for `python -m training.fit
    --config=...`, and evaluate their test error (the only time the search reads test)."""
    from training import evaluate

    folder = os.path.join(search.project_dir, "export")
    os.makedirs(folder, exist_ok=True)
    exported = []
    for rank, record in enumerate(records, start=1):
        trial = tuner.oracle.get_trial(record.trial_id)
        train_dir = tuner.train_dir(record.trial_id)
        experiment = tuner.trial_config(trial).replace(model_dir=None, evaluate_test=True)
        model_path = os.path.join(folder, f"best_{rank}.keras")
        shutil.copyfile(os.path.join(train_dir, "model.keras"), model_path)
        config_path = os.path.join(folder, f"best_{rank}.json")
        atomic_write(config_path, json.dumps(experiment.to_dict(), indent=2).encode())
        test = evaluate.evaluate(train_dir, checkpoint="latest", split="test")
        exported.append({"rank": rank, "trial": record.trial_id, "model": record.name,
                         "keras": model_path, "config": config_path, "params": record.params,
                         "macs": record.macs, "val_error": record.val_error,
                         "test_error": test["error"]})
    atomic_write(os.path.join(folder, "best_models.json"), json.dumps(exported, indent=2).encode())
    return exported
