r"""`python -m tuning.search`: which depth, width and cardinality give the lowest error at a budget?

    python -m tuning.search --dataset=../shared/data/cifar10 --tuner=bayesian --max_trials=20 \
        --epochs_per_trial=10 --max_flops=100000000 --directory=tuning_runs --export_best=3

The search space's flags (`--family`, `--blocks_per_stage`, ..., `--tune_learning_rate`, ...)
are the fields of `tuning.space.SearchSpace` and `TrainingSpace` (`training.field_flags`), with
their defaults; `--help` lists them. Every training flag of `python -m training.fit` applies
to each trial (`--recipe`, `--dataset`, `--batch_size`, `--mixed_precision`, `--strategy`,
...); by default trials use the `cifar10_resnet20` recipe (or `imagenet_resnet50` with
`--family=imagenet`) with a cosine schedule over `--epochs_per_trial`, a 5,000-image
validation split and deterministic ops.
Rerunning the same command resumes the search. Distributed: one `--role=chief` process serves
the oracle at `--oracle_address=host:port`; `--role=worker` processes (distinct `--tuner_id`s,
a shared `--directory`) run the trials; the chief writes the report.

Exit codes: 0 when the search finished with at least one completed trial; 2 with one line on
stderr for bad input or a project directory another live run holds (nothing is written then);
3 when the search finished but no trial completed (every one failed; the report says why);
130 / 143 when SIGINT / SIGTERM stopped a trial (rerun the command to resume it). A failed
trial (diverged, out of memory, ...) is one line in the log, a failed row of the report and
is never retried; the search goes on.
"""

import sys

from absl import app, flags

from training import cli, field_flags, setting_flags
from training import config as config_lib
from tuning.space import SearchSpace, TrainingSpace

PROGRAM = "tuning.search"
NO_TRIAL_COMPLETED = 3
FLAGS = flags.FLAGS

# The search's own flags; those of the search space are generated (define_flags).
_STRING_FLAGS = [
    ("tuner", "random", "random, bayesian or hyperband."),
    ("directory", "tuning_runs", "Where searches live."),
    ("project", "search", "This search's folder under --directory."),
    ("role", "local", "local, chief (serves the oracle) or worker (runs trials)."),
    ("oracle_address", None, "host:port of the chief's oracle (chief and workers)."),
    ("tuner_id", None, "A worker's unique id; default worker-<pid>."),
]
_INTEGER_FLAGS = [
    ("max_trials", 10, "Trials of a random or Bayesian search."),
    ("epochs_per_trial", 10, "Epochs per trial (Hyperband's most)."),
    ("max_params", None, "Budget: most trainable parameters."),
    ("max_flops", None, "Budget: most multiply-adds per image."),
    ("export_best", 0, "Export the best N models with configs and their test error."),
    ("search_seed", 0, "Seed of the oracle."),
]


def define_flags(flag_values=FLAGS):
    """The training flags of `training.fit` plus the search's own: those of the search space
    are the fields of `tuning.space.SearchSpace` and `TrainingSpace`."""
    setting_flags.define_flags(flag_values)
    for space in (SearchSpace, TrainingSpace):
        field_flags.define(space, flag_values)
        for spec in field_flags.field_flags(space):  # key flags: `--help` lists them
            flags.declare_key_flag(spec.flag, flag_values=flag_values)
    for name, default, help_text in _STRING_FLAGS:
        flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
    for name, default, help_text in _INTEGER_FLAGS:
        flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)


def _check_counts(flag_values):
    # Checked before the recipe is built: its own error would name `epochs`, not the flag.
    from keras_resnets import validate  # imports Keras: not before the flags are parsed

    for name, check in (("max_trials", validate.positive_int),
                        ("epochs_per_trial", validate.positive_int),
                        ("export_best", validate.non_negative_int),
                        ("max_params", validate.positive_int),
                        ("max_flops", validate.positive_int)):
        value = flag_values[name].value  # None only for the optional budget flags
        if value is not None:
            check(f"--{name}", value)


def search_config_from_flags(flag_values=FLAGS):
    """The `tuning.tuner.SearchConfig` of the command line."""
    from tuning import budget, tuner

    _check_counts(flag_values)
    settings = setting_flags.settings_from_flags(flag_values)
    # Trials are short: a cosine schedule over each trial's epochs (unless --schedule is given),
    # the papers' 45k/5k validation split, deterministic ops so any machine gets the same result.
    settings.setdefault("epochs", flag_values.epochs_per_trial)
    settings.setdefault("schedule", "cosine")
    settings.setdefault("validation_images", 5000)
    settings.setdefault("deterministic", True)
    recipe = flag_values.recipe or ("imagenet_resnet50" if flag_values.family == "imagenet"
                                    else "cifar10_resnet20")
    experiment = config_lib.recipe(recipe, **settings)
    space = field_flags.from_flags(SearchSpace, flag_values)
    training_space = field_flags.from_flags(TrainingSpace, flag_values)
    return tuner.SearchConfig(
        experiment=experiment, space=space, training_space=training_space,
        tuner=flag_values.tuner, max_trials=flag_values.max_trials,
        epochs_per_trial=flag_values.epochs_per_trial,
        budget=budget.Budget(flag_values.max_params, flag_values.max_flops),
        directory=flag_values.directory, project=flag_values.project,
        export_best=flag_values.export_best, seed=flag_values.search_seed)


def main(argv):
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}; every setting is a --flag.")
    cli.quiet_logs()

    def set_up():
        from tuning import tuner as tuner_lib

        search = search_config_from_flags()
        return search, tuner_lib.build_tuner(search, FLAGS.role, FLAGS.oracle_address,
                                             FLAGS.tuner_id)

    search, tuner = cli.set_up_or_fail(PROGRAM, set_up)
    from tuning import failures
    from tuning import tuner as tuner_lib

    with tuner:  # holds the project directory's lock to the end of the report
        try:
            tuner.search()
        except failures.SearchInterrupted as error:
            cli.stop(PROGRAM, error, error.exit_code)
        if FLAGS.role == "worker":
            return
        result = tuner_lib.write_report(tuner, search)
    where = result.tables["markdown"]
    if not result.completed:
        cli.fail(PROGRAM, f"no trial completed ({result.summary()}); the reasons are in "
                          f"{where}", NO_TRIAL_COMPLETED)
    print(f"{result.summary()}; results in {where}", flush=True)


def run_main():
    """The console entry point."""
    define_flags()
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))


if __name__ == "__main__":
    sys.exit(run_main())
