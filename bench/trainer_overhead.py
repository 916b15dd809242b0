"""The training loop's overhead: training.trainer against a bare `model.fit`, same model and data.

    python -m bench.trainer_overhead                # ResNet-20, 10,000 cached CIFAR-10 images
    python -m bench.trainer_overhead --dataset=synthetic --max_train_examples=1024 --windows=3

Contenders, each training the same network (`ModelConfig.build` of the experiment, ResNet-20 by
default) on the same batches (one shared `training.data.Pipeline`, `Pipeline.train(epoch,
128)`) with the same optimizer (`training.trainer.build_optimizer`: SGD, momentum 0.9, the
experiment's learning-rate schedule), XLA as the runtime resolves it (off on CPU):

- `model.fit`: the baseline. `model.compile(optimizer, SparseCategoricalCrossentropy,
  metrics=["accuracy"])`, then `model.fit(pipeline.train(epoch, 128), epochs=1, verbose=0)`
  for each epoch.
- `trainer`: `training.trainer.Trainer(...).fit()` without a model directory: the custom loop
  (`strategy.run` step, per-step loss / accuracy read back to Python for the divergence check and
  the logs, Keras callbacks), writing nothing.
- `trainer+model_dir`: the same with a model directory, as `python -m training.fit` runs: at the
  end of every epoch a checkpoint (`tf.train.CheckpointManager`), history.csv and results.json
  (curves.png at most every 30 s and at the end of each `fit()` call, after the timed region),
  and TensorBoard scalars every 100 steps.

Timing: one epoch per window and contender, measured by the same callback from
`on_epoch_begin` to `on_epoch_end` on every side: that includes building the epoch's dataset
and iterator, every step, and everything the loop does at the end of an epoch before
`on_epoch_end` (for `trainer+model_dir`, the checkpoint and the files above are inside the
timed region). Not timed: what each call pays once per run (Keras' fit setup; the trainer's
start and, since each window is one `fit()` call that stops after an epoch, the resume from
the last checkpoint that `trainer+model_dir` does at the start of each call). The first epoch
of each contender (tracing) is a warm-up. Windows are interleaved, the order rotated each round,
and the ratio is the median over rounds of contender / `model.fit` images/s (bench/harness.py).
Weight decay and label smoothing are 0 so that both sides compute the same loss (the trainer
adds weight decay to its loss; a compiled model has no equivalent without regularizers), and
there is no evaluation. Results go to bench/results/trainer_overhead-<UTC time>.json and .md.
"""

import argparse
import dataclasses
import os
import tempfile
from typing import List, Optional

import keras

from bench import harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get(
    "CIFAR10", os.path.join(os.path.dirname(REPO), "shared", "data", "cifar10"))
BASELINE = "model.fit"
OURS = "trainer"
OURS_DIR = "trainer+model_dir"
MAX_OVERHEAD = 0.03
_EPOCHS = 100_000  # the run's nominal length; each window trains one epoch of it


@dataclasses.dataclass
class Settings:
    dataset: str = DEFAULT_DATA
    model: str = "resnet20"
    batch: int = 128
    max_train_examples: Optional[int] = 10_000
    synthetic_examples: int = 2048
    windows: int = 5
    warmup_epochs: int = 1
    max_other_cores: float = 0.25
    quiet_timeout_s: float = 0.0
    retries: int = 0

    def quiet(self) -> harness.Quiet:
        return harness.Quiet(self.max_other_cores, self.quiet_timeout_s, retries=self.retries)


def experiment(settings: Settings, model_dir: Optional[str] = None):
    from training import config

    return config.from_settings(dict(
        model=settings.model, dataset=settings.dataset, global_batch_size=settings.batch,
        max_train_examples=settings.max_train_examples,
        synthetic_examples=settings.synthetic_examples, validation_images=0,
        epochs=_EPOCHS, learning_rate=0.1, momentum=0.9, weight_decay=0.0, schedule="step",
        decay_epochs=(_EPOCHS // 2,), eval_every_epochs=_EPOCHS, verbose=0,
        save_model=False, keep_checkpoints=1, model_dir=model_dir, seed=0), name="overhead")


class EpochMeter(keras.callbacks.Callback):
    """Times each epoch from `on_epoch_begin` to `on_epoch_end`, with the cores this process and
    the others kept busy meanwhile (`harness.CpuMeter`); with `stop_after_epoch` it ends the
    run after each epoch."""

    def __init__(self, stop_after_epoch=False):
        super().__init__()
        self.stop_after_epoch = stop_after_epoch
        self.last = None
        self._meter = harness.CpuMeter()

    def on_epoch_begin(self, epoch, logs=None):
        self._meter.start()

    def on_epoch_end(self, epoch, logs=None):
        wall, own, others = self._meter.stop()
        self.last = {"seconds": wall, "cores_busy": own, "other_cores": others}
        if self.stop_after_epoch:
            self.model.stop_training = True


@dataclasses.dataclass
class Contender:
    """`epoch()` trains one epoch and returns the `EpochMeter` figures of it."""

    name: str
    epoch: object
    images_per_epoch: int


def _bare_fit(pipeline, exp, trainer) -> Contender:
    from training import trainer as trainer_lib

    info = pipeline.info
    model = exp.model.build(info.num_classes, info.image_shape)
    optimizer = trainer_lib.build_optimizer(exp.optimization, trainer.schedule,
                                            trainer.runtime.dtype_policy)
    if trainer.runtime.dtype_policy != "float32":
        raise ValueError("the bare model.fit side runs in float32 only")
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"], jit_compile=trainer.runtime.jit_compile)
    meter, state = EpochMeter(), {"epoch": 0}

    def epoch():
        model.fit(pipeline.train(state["epoch"], trainer.runtime.global_batch_size),
                  epochs=1, verbose=0, callbacks=[meter])
        state["epoch"] += 1
        return meter.last

    return Contender(BASELINE, epoch, trainer.steps_per_epoch * trainer.runtime.global_batch_size)


def _ours(name, trainer) -> Contender:
    meter = EpochMeter(stop_after_epoch=True)

    def epoch():
        trainer.fit(callbacks=[meter])
        return meter.last

    return Contender(name, epoch, trainer.steps_per_epoch * trainer.runtime.global_batch_size)


def make_contenders(settings: Settings, model_dir: str) -> List[Contender]:
    from training import trainer as trainer_lib

    exp = experiment(settings)
    pipeline = trainer_lib.make_pipeline(exp.data)
    ours = trainer_lib.Trainer(exp, pipeline=pipeline)
    ours_dir = trainer_lib.Trainer(experiment(settings, model_dir), pipeline=pipeline)
    return [_bare_fit(pipeline, exp, ours), _ours(OURS, ours), _ours(OURS_DIR, ours_dir)]


def time_epochs(contenders: List[Contender], settings: Settings, log=harness.log) -> dict:
    """Warm-up epochs, then `windows` rounds of one epoch per contender, order rotated each
    round; returns name -> lists as `harness.time_interleaved` does."""
    quiet = settings.quiet()
    for contender in contenders:
        for _ in range(settings.warmup_epochs):
            contender.epoch()
        log(f"  warmed up {contender.name}")
    series = {c.name: {key: [] for key in harness.SERIES} for c in contenders}
    for round_index in range(settings.windows):
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            waited, window = 0.0, None
            for _ in range(1 + settings.retries):
                seconds, found_quiet = quiet.wait()
                waited += seconds
                attempt = contender.epoch()
                if window is None or (attempt["other_cores"] or 0.0) < (
                        window["other_cores"] or 0.0):
                    window = attempt
                if quiet.is_clean(window["other_cores"]) or not found_quiet:
                    break
            entry = series[contender.name]
            entry["rates"].append(contender.images_per_epoch / window["seconds"])
            entry["cores_busy"].append(window["cores_busy"])
            entry["other_cores"].append(window["other_cores"])
            entry["waited_s"].append(waited)
        log(f"  round {round_index + 1}/{settings.windows}: " + ", ".join(
            f"{name} {entry['rates'][-1]:.1f}/s (others {entry['other_cores'][-1]})"
            for name, entry in series.items()))
    return series


def run(settings: Settings, log=harness.log) -> dict:
    result = {
        "benchmark": "trainer_overhead",
        "created": harness.timestamp(),
        "machine": harness.machine_info(),
        "settings": {
            **dataclasses.asdict(settings),
            "timed": "each epoch from on_epoch_begin to on_epoch_end (dataset and iterator, "
                     "all steps, end-of-epoch work; trainer+model_dir: checkpoint, "
                     "history.csv, results.json, TensorBoard scalars, curves.png when due)",
            "not_timed": "per-call setup of model.fit and Trainer.fit (including "
                         "trainer+model_dir's resume from its last checkpoint at each call)",
            "loss": "sparse categorical cross-entropy, weight decay 0, label smoothing 0",
            "optimizer": "training.trainer.build_optimizer: SGD momentum 0.9, step schedule",
            "ratio": "median over rounds of contender/model.fit images/s of the same round; "
                     "only clean rounds count when there are any",
        },
    }
    with tempfile.TemporaryDirectory(prefix="trainer_overhead_") as model_dir:
        contenders = make_contenders(settings, model_dir)
        log(f"{len(contenders)} contenders, {contenders[0].images_per_epoch} images per epoch")
        series = time_epochs(contenders, settings, log)
    quiet = settings.quiet()
    result["throughput"] = [
        {"name": name, "images_per_epoch": contenders[0].images_per_epoch,
         **harness.summarize(entry["rates"], entry["cores_busy"],
                             [c for c in entry["other_cores"] if c is not None],
                             harness.clean_rounds(series, [name], quiet))}
        for name, entry in series.items()]
    result["comparisons"] = []
    for name in (OURS, OURS_DIR):
        row = {"candidate": name, "baseline": BASELINE,
               **harness.ratio_summary(series[name]["rates"], series[BASELINE]["rates"],
                                       harness.clean_rounds(series, [name, BASELINE], quiet))}
        row["overhead"] = 1.0 / row["ratio"] - 1.0  # extra time per image against model.fit
        result["comparisons"].append(row)
    result["targets"] = [
        {"target": f"{row['candidate']} overhead <= {MAX_OVERHEAD:.0%} against model.fit",
         "value": row["overhead"], "threshold": MAX_OVERHEAD,
         "met": row["overhead"] <= MAX_OVERHEAD, "rounds": row["rounds"], "clean": row["clean"]}
        for row in result["comparisons"]]
    return result


def to_markdown(result: dict) -> str:
    machine, settings = result["machine"], result["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    return "\n".join([
        f"## Training-loop overhead ({result['created']} UTC)",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores; {versions}. "
        f"Model {settings['model']}, data {os.path.basename(settings['dataset'])} "
        f"({result['throughput'][0]['images_per_epoch']} images per epoch), batch "
        f"{settings['batch']}; {settings['warmup_epochs']} warm-up epoch(s), then "
        f"{settings['windows']} interleaved rounds of one epoch per contender. Timed: "
        f"{settings['timed']}. Not timed: {settings['not_timed']}. Loss: {settings['loss']}. "
        f"A window is clean when other processes kept at most {settings['max_other_cores']} "
        "cores busy.",
        "",
        harness.markdown_table(
            [("contender", "name", "{}"), ("images/s", "images_per_s", "{:.1f}"),
             *harness.WINDOW_COLUMNS],
            result["throughput"]),
        "",
        harness.markdown_table(
            [("candidate", "candidate", "{}"), ("baseline", "baseline", "{}"),
             ("throughput ratio", "ratio", "{:.3f}"), ("low", "ratio_low", "{:.3f}"),
             ("high", "ratio_high", "{:.3f}"), ("overhead", "overhead", "{:+.1%}"),
             ("rounds", "rounds", "{}"), ("clean", "clean", "{}")],
            result["comparisons"]),
        "",
        harness.targets_table(result["targets"], "{:+.1%}"),
    ])


def write(result: dict, results_dir: str = harness.RESULTS_DIR, update_readme=False) -> dict:
    return harness.write_results(result, to_markdown(result), "trainer_overhead", results_dir,
                                 readme_section="trainer_overhead" if update_readme else None)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.trainer_overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=DEFAULT_DATA,
                        help="CIFAR-10 image folder (cached in memory) or 'synthetic'")
    parser.add_argument("--model", default="resnet20", help="a keras_resnets registry name")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=10_000,
                        help="training images per epoch (0: all)")
    parser.add_argument("--synthetic_examples", type=int, default=2048)
    parser.add_argument("--windows", type=int, default=5, help="rounds of one epoch each")
    parser.add_argument("--warmup_epochs", type=int, default=1)
    parser.add_argument("--max_other_cores", type=float, default=0.25)
    parser.add_argument("--quiet_timeout_s", type=float, default=0.0)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--results_dir", default=harness.RESULTS_DIR)
    parser.add_argument("--update_readme", action="store_true",
                        help="quote the table in bench/README.md")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = _parse(argv)
    settings = Settings(
        dataset=args.dataset if args.dataset == "synthetic" else os.path.abspath(args.dataset),
        model=args.model, batch=args.batch, max_train_examples=args.max_train_examples or None,
        synthetic_examples=args.synthetic_examples, windows=args.windows,
        warmup_epochs=args.warmup_epochs, max_other_cores=args.max_other_cores,
        quiet_timeout_s=args.quiet_timeout_s, retries=args.retries)
    result = run(settings)
    paths = write(result, args.results_dir, args.update_readme)
    print(to_markdown(result))
    harness.log(f"wrote {paths['json']} and {paths['markdown']}")
    return result


if __name__ == "__main__":
    main()
