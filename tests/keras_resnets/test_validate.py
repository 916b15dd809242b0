"""The shared argument checks: what they accept and their exact messages."""

import math

import numpy as np
import pytest

from keras_resnets import validate

ACCEPTED = [
    (validate.choice, ("stem", "cifar", ("imagenet", "cifar"))),
    (validate.choice, ("pooling", None, (None, "avg"))),
    (validate.choices, ("units", ("original",), ("original", "full_preactivation"))),
    (validate.positive_int, ("depth", np.int64(3))),
    (validate.non_negative_int, ("export_best", 0)),
    (validate.positive_number, ("width_multiplier", 0.25)),
    (validate.positive, ("bn_epsilon", 1e-5)),
    (validate.number_in, ("bn_momentum", 0, 0, 1)),
    (validate.not_empty, ("units", ("original",))),
    (validate.boolean, ("nesterov", False)),
    (validate.strictly_increasing, ("decay_steps", (1, 2, 30))),
    (validate.strictly_increasing, ("decay_steps", ())),
]


@pytest.mark.parametrize("check, arguments", ACCEPTED, ids=lambda x: getattr(x, "__name__", ""))
def test_good_values_pass(check, arguments):
    assert check(*arguments) is None


REFUSED = [
    (lambda: validate.choice("stem", "mnist", ("imagenet", "cifar")),
     "stem must be one of ['imagenet', 'cifar']; got 'mnist'."),
    (lambda: validate.choice("data_format", "NCHW", ("channels_last",), prefix="None or "),
     "data_format must be None or one of ['channels_last']; got 'NCHW'."),
    (lambda: validate.choices("units", ("preact", "original", 3), ("original",)),
     "units holds unknown values ['preact', 3]; valid values are ['original']."),
    (lambda: validate.positive_int("depth", 0), "depth must be a positive integer; got 0."),
    (lambda: validate.positive_int("depth", True), "depth must be a positive integer; got True."),
    (lambda: validate.positive_int("depth", 2.0), "depth must be a positive integer; got 2.0."),
    (lambda: validate.non_negative_int("export_best", -1),
     "export_best must be a non-negative integer; got -1."),
    (lambda: validate.positive_number("width_multiplier", 0),
     "width_multiplier must be a positive number; got 0."),
    (lambda: validate.positive_number("width_multiplier", math.inf),
     "width_multiplier must be a positive number; got inf."),
    (lambda: validate.positive("max_flops", -5, suffix=" or None"),
     "max_flops must be positive or None; got -5."),
    (lambda: validate.positive("bn_epsilon", "small"), "bn_epsilon must be positive; got 'small'."),
    (lambda: validate.number_in("bn_momentum", 1.0, 0, 1, high_open=True, what="in "),
     "bn_momentum must be in [0, 1); got 1.0."),
    (lambda: validate.number_in("label_smoothing", math.nan, 0, 1),
     "label_smoothing must be a number in [0, 1]; got nan."),
    (lambda: validate.number_in("rate", 0, 0, 1, low_open=True),
     "rate must be a number in (0, 1]; got 0."),
    (lambda: validate.not_empty("units", (), what="The search space is empty: "),
     "The search space is empty: units has no values."),
    (lambda: validate.boolean("nesterov", 1), "nesterov must be True or False; got 1."),
    (lambda: validate.strictly_increasing("decay_epochs", [30.0, 30.0]),
     "decay_epochs must be strictly increasing; got (30.0, 30.0)."),
]


@pytest.mark.parametrize("call, message", REFUSED, ids=[m for _, m in REFUSED])
def test_bad_values_raise_one_message_naming_the_argument(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert str(error.value) == message
