"""Input pipeline throughput: what training/data.py delivers against what ResNet-20 consumes.

    python -m bench.pipeline                        # CIFAR-10 from ../shared/data/cifar10
    python -m bench.pipeline --max_train_examples=2000 --windows=3 --min_window_s=2

Contenders, timed in one process in interleaved windows (bench/harness.py), in images/s:

- `pipeline(cached)`: `training.data.Pipeline` over the CIFAR-10 image folder with
  `cache=True` (the images decoded once into memory) and the CIFAR training augmentation
  (per-pixel mean subtraction, 4-pixel zero padding, random 32x32 crop, random flip): batches of
  128 pulled from `Pipeline.train(epoch, 128)`, epoch after epoch (building each epoch's
  dataset is inside the timed windows).
- `pipeline(uncached)`: the same with `cache=False`: every epoch reads and decodes the JPEG
  files again.
- `ResNet-20 train`: `keras_resnets.ResNet20` training at batch 128 on a batch already in memory
  (the compiled `train_on_batch` step of bench.models): the rate at which training consumes
  images when data costs nothing.
- `ResNet-20 train from pipeline(cached)` (`--fed`): the same step fed by the cached pipeline,
  the two sharing the cores as they do in a real run.

Ratios: each pipeline against the ResNet-20 consumption (target >= 10x, issue 5), and the fed
training against the one on in-memory data. The pipeline's prefetch buffer keeps filling for a
moment after its window ends, so a window may start with a few batches ready (a few of the
hundreds a window pulls). The data folder is `--data_dir`, else the `CIFAR10` environment
variable, else ../shared/data/cifar10 beside the repository. Results go to
bench/results/pipeline-<UTC time>.json and .md.
"""

import argparse
import dataclasses
import os
from typing import Optional

from bench import harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get(
    "CIFAR10", os.path.join(os.path.dirname(REPO), "shared", "data", "cifar10"))
TARGET = 10.0
CONSUMER = "ResNet-20 train"
FED = "ResNet-20 train from pipeline(cached)"


@dataclasses.dataclass
class Settings:
    data_dir: str = DEFAULT_DATA
    batch: int = 128
    max_train_examples: Optional[int] = 10_000
    augmentation: str = "cifar"
    fed: bool = True
    windows: int = 5
    warmup_steps: int = 2
    min_window_s: float = 5.0
    max_other_cores: float = 0.25
    quiet_timeout_s: float = 0.0
    retries: int = 0

    def quiet(self) -> harness.Quiet:
        return harness.Quiet(self.max_other_cores, self.quiet_timeout_s, retries=self.retries)


def make_pipeline(settings: Settings, cache: bool):
    from training.data import DataConfig, Pipeline

    return Pipeline(DataConfig(dataset=settings.data_dir, cache=cache,
                               augmentation=settings.augmentation,
                               max_train_examples=settings.max_train_examples))


def batches(pipeline, batch: int):
    """`pipeline.train(epoch, batch)` for epoch 0, 1, 2, ...: an endless batch iterator."""
    epoch = 0
    while True:
        for images, labels in pipeline.train(epoch, batch):
            yield images, labels
        epoch += 1


def pipeline_workload(name, pipeline, batch) -> harness.Workload:
    iterator = batches(pipeline, batch)
    return harness.Workload(name, lambda: next(iterator), batch)


def _resnet20(image_shape, classes):
    import keras

    import keras_resnets

    model = keras_resnets.ResNet20(input_shape=image_shape, classes=classes)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
    return model


def consumer_workloads(pipeline, settings: Settings):
    """ResNet-20 training on one in-memory batch and, with `settings.fed`, fed by `pipeline`."""
    images, labels = next(iter(pipeline.train(0, settings.batch)))
    info = pipeline.info
    model = _resnet20(info.image_shape, info.num_classes)
    workloads = [harness.Workload(CONSUMER, lambda: model.train_on_batch(images, labels),
                                  settings.batch)]
    if settings.fed:
        fed_model = _resnet20(info.image_shape, info.num_classes)
        iterator = batches(pipeline, settings.batch)

        def fed_step():
            x, y = next(iterator)
            fed_model.train_on_batch(x, y)

        workloads.append(harness.Workload(FED, fed_step, settings.batch))
    return workloads


def run(settings: Settings, log=harness.log) -> dict:
    result = {
        "benchmark": "pipeline",
        "created": harness.timestamp(),
        "machine": harness.machine_info(),
        "settings": {**dataclasses.asdict(settings),
                     "consumer": "keras_resnets.ResNet20, compiled train_on_batch, "
                                 "SGD(learning_rate=0.01, momentum=0.9), XLA off",
                     "ratio": "median over rounds of candidate/baseline images/s of the same "
                              "round; only clean rounds count when there are any"},
    }
    pipelines = {}
    for name, cache in (("pipeline(cached)", True), ("pipeline(uncached)", False)):
        pipelines[name] = make_pipeline(settings, cache)
        info = pipelines[name].info
        log(f"{name}: {info.train_examples} training images, cached={pipelines[name].cached}, "
            f"built in {pipelines[name].load_seconds:.1f} s")
    cached = pipelines["pipeline(cached)"]
    result["data"] = {
        "dataset": cached.info.name, "train_examples": cached.info.train_examples,
        "image_shape": list(cached.info.image_shape), "augmentation": cached.augmentation,
        "normalization": cached.normalization,
        "load_seconds": {name: p.load_seconds for name, p in pipelines.items()},
        "cached": {name: p.cached for name, p in pipelines.items()},
    }
    workloads = [pipeline_workload(name, p, settings.batch) for name, p in pipelines.items()]
    workloads += consumer_workloads(cached, settings)
    quiet = settings.quiet()
    series = harness.time_interleaved(workloads, warmup_steps=settings.warmup_steps,
                                      windows=settings.windows,
                                      min_window_s=settings.min_window_s, quiet=quiet, log=log)
    result["throughput"] = [
        {"name": name, "batch": settings.batch,
         **harness.summarize(entry["rates"], entry["cores_busy"],
                             [c for c in entry["other_cores"] if c is not None],
                             harness.clean_rounds(series, [name], quiet))}
        for name, entry in series.items()]
    pairs = [(name, CONSUMER) for name in pipelines] + ([(FED, CONSUMER)] if settings.fed else [])
    result["comparisons"] = [
        {"candidate": candidate, "baseline": baseline,
         **harness.ratio_summary(series[candidate]["rates"], series[baseline]["rates"],
                                 harness.clean_rounds(series, [candidate, baseline], quiet))}
        for candidate, baseline in pairs]
    result["targets"] = [
        {"target": f"{row['candidate']} >= {TARGET:g}x the ResNet-20 training rate",
         "value": row["ratio"], "threshold": TARGET, "met": row["ratio"] >= TARGET,
         "rounds": row["rounds"], "clean": row["clean"]}
        for row in result["comparisons"] if row["candidate"] in pipelines]
    return result


def to_markdown(result: dict) -> str:
    machine, settings, data = result["machine"], result["settings"], result["data"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    load = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in data["load_seconds"].items())
    return "\n".join([
        f"## Input pipeline ({result['created']} UTC)",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores; {versions}. "
        f"Data: {data['dataset']}, {data['train_examples']} training images "
        f"{tuple(data['image_shape'])}, augmentation {data['augmentation']}, normalization "
        f"{data['normalization']}; pipeline built in {load}. Batch {settings['batch']}; "
        f"{settings['windows']} interleaved windows of >= {settings['min_window_s']} s after "
        f"{settings['warmup_steps']} warm-up steps. Consumer: {settings['consumer']}. A window "
        f"is clean when other processes kept at most {settings['max_other_cores']} cores busy.",
        "",
        harness.markdown_table(
            [("contender", "name", "{}"), ("images/s", "images_per_s", "{:.0f}"),
             *harness.WINDOW_COLUMNS],
            result["throughput"]),
        "",
        harness.markdown_table(
            [("candidate", "candidate", "{}"), ("baseline", "baseline", "{}"),
             ("ratio", "ratio", "{:.2f}"), ("low", "ratio_low", "{:.2f}"),
             ("high", "ratio_high", "{:.2f}"), ("rounds", "rounds", "{}"),
             ("clean", "clean", "{}")],
            result["comparisons"]),
        "",
        harness.targets_table(result["targets"], "{:.2f}"),
    ])


def write(result: dict, results_dir: str = harness.RESULTS_DIR, update_readme=False) -> dict:
    return harness.write_results(result, to_markdown(result), "pipeline", results_dir,
                                 readme_section="pipeline" if update_readme else None)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA, help="CIFAR-10 image folder")
    parser.add_argument("--max_train_examples", type=int, default=10_000,
                        help="training images the pipelines hold (0: all 50,000)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--fed", action=argparse.BooleanOptionalAction, default=True,
                        help="also time ResNet-20 training fed by the cached pipeline")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--min_window_s", type=float, default=5.0)
    parser.add_argument("--max_other_cores", type=float, default=0.25)
    parser.add_argument("--quiet_timeout_s", type=float, default=0.0)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--results_dir", default=harness.RESULTS_DIR)
    parser.add_argument("--update_readme", action="store_true",
                        help="quote the table in bench/README.md")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = _parse(argv)
    if not os.path.isdir(args.data_dir):
        raise SystemExit(f"no CIFAR-10 image folder at {args.data_dir}; pass --data_dir or set "
                         "CIFAR10")
    settings = Settings(
        data_dir=os.path.abspath(args.data_dir), batch=args.batch,
        max_train_examples=args.max_train_examples or None, fed=args.fed,
        windows=args.windows, warmup_steps=args.warmup_steps, min_window_s=args.min_window_s,
        max_other_cores=args.max_other_cores, quiet_timeout_s=args.quiet_timeout_s,
        retries=args.retries)
    result = run(settings)
    paths = write(result, args.results_dir, args.update_readme)
    print(to_markdown(result))
    harness.log(f"wrote {paths['json']} and {paths['markdown']}")
    return result


if __name__ == "__main__":
    main()
