"""RandAugment's settings from timm's configuration string, without TensorFlow (so that
`training.data_config` can check them).

timm's string (`rand_augment_transform` in timm/data/auto_augment.py) is dash-separated
`m<magnitude>` (default 10), `n<ops per image>` (default 2), `mstd<standard deviation of the
magnitude>` (default 0; above 100 the magnitude is uniform in [0, m]), `inc<0 or 1>` (1: the
"increasing" transforms, whose severity grows with the magnitude; default 0) and
`p<probability of each op>` (default 0.5), with or without timm's leading `rand`, e.g.
`"rand-m9-mstd0.5-inc1"` (timm's ImageNet recipes) or `"m9-n2"`.
"""

import dataclasses
import math
import re

# timm's _LEVEL_DENOM: magnitudes run from 0 to 10.
MAX_MAGNITUDE = 10.0
_KEYS = ("m", "n", "mstd", "inc", "p")


@dataclasses.dataclass(frozen=True)
class Settings:
    """RandAugment's settings (timm's names in brackets): `magnitude` (m), `ops` (n),
    `magnitude_std` (mstd; `inf` draws the magnitude uniformly from [0, m]), `increasing`
    (inc) and `prob` (p)."""

    magnitude: float = MAX_MAGNITUDE
    ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False
    prob: float = 0.5


def parse(config: str) -> Settings:
    """The `Settings` of a timm configuration string.

    Args:
        config: str. timm's string, e.g. `"rand-m9-mstd0.5-inc1"` (see the module docstring).

    Returns:
        `Settings`; keys left out take timm's defaults. Another string is a `ValueError`
        naming `randaugment` and the expected form.

    Example:

    >>> parse("rand-m9-mstd0.5-inc1")
    Settings(magnitude=9.0, ops=2, magnitude_std=0.5, increasing=True, prob=0.5)
    """
    expected = ("dash-separated m<0-10>, n<ops>, mstd<std>, inc<0|1>, p<0-1> (timm's "
                "rand_augment_transform, e.g. 'rand-m9-mstd0.5-inc1')")
    parts = config.split("-") if isinstance(config, str) and config else [None]
    if parts[0] == "rand":
        parts = parts[1:]
    values = {}
    for part in parts:
        match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d*)?)", part or "")
        if not match or match.group(1) not in _KEYS or match.group(1) in values:
            raise ValueError(f"randaugment must be {expected}; got {config!r}.")
        values[match.group(1)] = float(match.group(2))
    settings = Settings(
        magnitude=values.get("m", MAX_MAGNITUDE), ops=int(values.get("n", 2)),
        magnitude_std=math.inf if values.get("mstd", 0.0) > 100 else values.get("mstd", 0.0),
        increasing=bool(values.get("inc", 0)), prob=values.get("p", 0.5))
    if not (0 <= settings.magnitude <= MAX_MAGNITUDE and settings.ops == values.get("n", 2) >= 1
            and values.get("inc", 0) in (0, 1) and 0 <= settings.prob <= 1):
        raise ValueError(f"randaugment must be {expected}; got {config!r}.")
    return settings
