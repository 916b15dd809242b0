"""Model build time of the deep networks, against keras.applications' ResNet152 where it has a twin.

    python -m bench.build_time                      # 3 interleaved rounds, a few minutes
    python -m bench.build_time --repeats=5 --models=resnet152_twins

Each build runs after `keras.backend.clear_session()` in one process, the contenders of a round in
rotated order (as bench/harness.py does for throughput); the figure is the median over rounds and
the ratio the median of per-round ratios (build seconds of keras.applications / ours, so above
1.0 means ours builds faster). Results go to bench/results/build_time-<UTC time>.json and .md.
"""

import argparse
import gc
import time
from typing import Dict, Optional, Sequence

from bench import harness

# name -> (builder, keras.applications twin or None)
BUILDS = {
    "keras.applications.ResNet152": ("keras.applications:ResNet152", None),
    "keras_resnets.ResNet152(keras_applications)": (
        "keras_resnets:ResNet152", "keras.applications.ResNet152"),
    "keras_resnets.ResNet152": ("keras_resnets:ResNet152", "keras.applications.ResNet152"),
    "keras_resnets.ResNet1202": ("keras_resnets:ResNet1202", None),
    "keras_resnets.PreActResNet1001": ("keras_resnets:PreActResNet1001", None),
}
OPTIONS = {
    "keras.applications.ResNet152": {"weights": None},
    "keras_resnets.ResNet152(keras_applications)": {"layer_config": "keras_applications"},
}


def build(name: str):
    """Build the named model and return it."""
    import importlib

    path, _ = BUILDS[name]
    module_name, function_name = path.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)(**OPTIONS.get(name, {}))


def time_builds(names: Sequence[str], repeats: int, log=harness.log) -> Dict[str, dict]:
    """Build each model `repeats` times, interleaved; returns name -> seconds and model facts."""
    import keras

    import keras_resnets

    # Warm both code paths (imports, first-layer set-up) before anything is timed.
    keras_resnets.ResNet20()
    keras.applications.ResNet50(weights=None)
    seconds: Dict[str, list] = {name: [] for name in names}
    facts = {}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in list(names[shift:]) + list(names[:shift]):
            keras.backend.clear_session()
            gc.collect()
            start = time.perf_counter()
            model = build(name)
            seconds[name].append(time.perf_counter() - start)
            facts[name] = {"layers": len(model.layers), "params": model.count_params()}
            del model
        log(f"round {round_index + 1}/{repeats}: "
            + ", ".join(f"{n} {seconds[n][-1]:.2f}s" for n in names))
    keras.backend.clear_session()
    return {name: {"seconds": seconds[name], **facts[name]} for name in names}


def run(names: Sequence[str], repeats: int, log=harness.log) -> dict:
    measured = time_builds(names, repeats, log)
    rows, comparisons = [], []
    for name in names:
        values = measured[name]["seconds"]
        median = harness.median(values)
        rows.append({
            "name": name, "layers": measured[name]["layers"], "params": measured[name]["params"],
            "seconds": median, "spread": harness.relative_spread(values), "rounds": values,
            "ms_per_layer": 1000 * median / measured[name]["layers"],
        })
        twin = BUILDS[name][1]
        if twin in measured:
            # Speed ratio: baseline seconds / candidate seconds per round (> 1: ours is faster).
            comparisons.append({"candidate": name, "baseline": twin, **harness.ratio_summary(
                measured[twin]["seconds"], values)})
    return {
        "benchmark": "build_time",
        "created": harness.timestamp(),
        "machine": harness.machine_info(),
        "settings": {"repeats": repeats, "models": list(names),
                     "ratio": "median over rounds of baseline seconds / candidate seconds "
                              "(build speed; above 1.0 the candidate builds faster)"},
        "builds": rows,
        "comparisons": comparisons,
    }


def to_markdown(result: dict) -> str:
    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    return "\n".join([
        f"## Build time ({result['created']} UTC)",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores; {versions}. "
        f"Median of {result['settings']['repeats']} interleaved builds after "
        "`keras.backend.clear_session()`.",
        "",
        harness.markdown_table(
            [("model", "name", "{}"), ("layers", "layers", "{}"), ("params", "params", "{:,}"),
             ("build s", "seconds", "{:.2f}"), ("spread", "spread", "{:.0%}"),
             ("ms/layer", "ms_per_layer", "{:.2f}")],
            result["builds"]),
        "",
        harness.markdown_table(
            [("candidate", "candidate", "{}"), ("baseline", "baseline", "{}"),
             ("build speed ratio", "ratio", "{:.3f}"), ("low", "ratio_low", "{:.3f}"),
             ("high", "ratio_high", "{:.3f}")],
            result["comparisons"]),
    ])


def main(argv=None) -> Optional[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.build_time", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(BUILDS),
                        help=f"comma-separated names from: {', '.join(BUILDS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results_dir", default=harness.RESULTS_DIR)
    parser.add_argument("--update_readme", action="store_true",
                        help="quote the table in bench/README.md")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in BUILDS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {', '.join(BUILDS)}")
    result = run(names, args.repeats)
    markdown = to_markdown(result)
    paths = harness.write_results(result, markdown, "build_time", args.results_dir,
                                  readme_section="build_time" if args.update_readme else None)
    print(markdown)
    harness.log(f"wrote {paths['json']} and {paths['markdown']}")
    return result


if __name__ == "__main__":
    main()
