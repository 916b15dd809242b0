"""Keras-loop runs on the JAX devices of one process, for `test_jax_distribution`:
`KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2
python tests/training/jax_devices_worker.py SPEC.json`.

The spec is a JSON object: `settings` (flat `training.config` settings), `runs` (a list of
`[name, strategy]`: each run trains in this process with that strategy and, when `settings`
has a `model_dir`, writes to `<model_dir>/<name>`) and `output` (a JSON path). The output holds,
per run name, its `results.json` contents and its final weights as lists; `errors` holds the
message of the ValueError of each `bad_settings` entry (settings that replace `settings`).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(path):
    with open(path) as file:
        spec = json.load(file)
    from training import config, keras_loop

    output = {"errors": []}
    for name, strategy in spec["runs"]:
        settings = dict(spec["settings"], strategy=strategy)
        if settings.get("model_dir"):
            settings["model_dir"] = os.path.join(settings["model_dir"], name)
        trainer = keras_loop.KerasTrainer(config.from_settings(settings))
        trainer.fit()
        output[name] = {"results": trainer.results,
                        "weights": [w.tolist() for w in trainer.model.get_weights()]}
    for bad in spec.get("bad_settings", []):
        try:
            keras_loop.KerasTrainer(config.from_settings(dict(spec["settings"], **bad)))
        except ValueError as error:
            output["errors"].append(str(error))
    with open(spec["output"], "w") as file:
        json.dump(output, file)


if __name__ == "__main__":
    main(sys.argv[1])
