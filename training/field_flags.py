"""Command-line flags generated from a dataclass's fields: the data, optimisation, runtime and
fine-tuning flags of `python -m training.fit` (`training.setting_flags`) and the search space's
flags of `python -m tuning.search` (`tuning.space.SearchSpace`, `TrainingSpace`).

Each field is one flag, named as the field (or as its `metadata["flag"]`), with the field's
default. Its help is the field's `metadata["help"]` when given, else the field's entry in the
Args of the class docstring (keras-hub style, `name: type. Meaning. Defaults to X.`) without its
type and its "Defaults to" sentence, since the help prints the default. A field whose
`metadata["choices"]` are strings is an enum flag of those values (other choices, such as
`DataConfig.eval_crops`' integers, are left to the class's own check). `Optional[X]` is a flag of
X whose default is `None`. A tuple field is a comma-separated flag whose items have the tuple's
element type: `--units=original,full_preactivation`; `--units=` is the empty tuple. A new field
with its help (metadata or docstring entry) is a new flag; nothing else changes.

>>> import dataclasses
>>> from typing import Tuple
>>> from absl import flags
>>> @dataclasses.dataclass(frozen=True)
... class Space:
...     '''Args:
...         depths: tuple of int. Depths to try. Defaults to `(20, 56)`.
...     '''
...     depths: Tuple[int, ...] = (20, 56)
>>> flag_values = flags.FlagValues()
>>> define(Space, flag_values)
>>> flag_values(["search", "--depths=110,164"])
['search']
>>> from_flags(Space, flag_values)
Space(depths=(110, 164))
>>> flag_values["depths"].default, flag_values["depths"].help
('20,56', 'Depths to try. A comma-separated list.')
"""

import dataclasses
import re
import types
import typing
from typing import Dict, List, Optional, Tuple

from absl import flags

_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_boolean}
_ITEMS = {int: "integers", float: "numbers"}  # str items never fail
_ENTRY = re.compile(r"(\w+): (.*)$")  # an Args entry; its continuation lines indent more
_DEFAULTS_TO = re.compile(r"\s*Defaults to .*$")


@dataclasses.dataclass(frozen=True)
class FieldFlag:
    """The flag of one dataclass field.

    Attributes:
        field: str. The field's name.
        flag: str. The flag's name (without `--`).
        item_type: type. `str`, `int`, `float` or `bool`: the field's type, or its tuple's items'.
        is_tuple: bool. Whether the flag is a comma-separated list (a tuple field).
        default: The flag's default: the field's, a tuple as comma-separated text.
        help: str. The field's `metadata["help"]`, else its docstring entry without its type
            and default (a tuple's adds "A comma-separated list.").
        choices: tuple of str or `None`. The values of an enum flag (a `str` field whose
            `metadata["choices"]` are strings); `None` for other flags.
    """

    field: str
    flag: str
    item_type: type
    is_tuple: bool
    default: object
    help: str
    choices: Optional[Tuple[str, ...]] = None


def field_flags(cls, skip=()) -> List[FieldFlag]:
    """The flags of the fields of the dataclass `cls`, in field order.

    Args:
        cls: a dataclass type.
        skip: collection of str. Fields that get no flag (a command line defines those itself).
            Defaults to `()`.

    Raises:
        TypeError: a field without a default, with a type other than `str`, `int`, `float`,
            `bool` or a tuple of one of them (optionally `Optional`), or without help (no
            `metadata["help"]` and no entry with a meaning in the Args of `cls`'s docstring or a
            base class's).
    """
    hints = typing.get_type_hints(cls)
    result = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        where = f"{cls.__name__}.{field.name}"
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{where} has no default; a flag needs one.")
        item_type, is_tuple = _flag_type(where, hints[field.name])
        default = field.default
        if is_tuple and default is not None:
            default = ",".join(str(item) for item in default)
        help_text = field.metadata.get("help") or _help(cls, field.name)
        if is_tuple:
            help_text += " A comma-separated list."
        choices = field.metadata.get("choices")
        is_enum = (item_type is str and not is_tuple and bool(choices)
                   and all(isinstance(choice, str) for choice in choices))
        result.append(FieldFlag(field.name, field.metadata.get("flag", field.name), item_type,
                                is_tuple, default, help_text,
                                tuple(choices) if is_enum else None))
    return result


def define(cls, flag_values=flags.FLAGS, skip=()) -> None:
    """Defines the flags of `cls`'s fields (but those in `skip`) in `flag_values`.

    The flags belong to this module for absl: a command line whose `--help` lists only its key
    flags declares them key flags (`flags.declare_key_flag`), as `tuning.search` does.
    """
    for spec in field_flags(cls, skip):
        if spec.choices is not None:
            flags.DEFINE_enum(spec.flag, spec.default, list(spec.choices), spec.help,
                              flag_values=flag_values)
            continue
        define_flag = flags.DEFINE_string if spec.is_tuple else _DEFINE[spec.item_type]
        define_flag(spec.flag, spec.default, spec.help, flag_values=flag_values)


def from_flags(cls, flag_values=flags.FLAGS):
    """A `cls` from the parsed flags of its fields (each flag's value, given or default).

    Raises:
        ValueError: an item of a comma-separated flag is not of the field's item type.
    """
    return cls(**values_from_flags(cls, flag_values))


def values_from_flags(cls, flag_values=flags.FLAGS) -> Dict[str, object]:
    """The field values of `cls` the parsed flags hold, by field name."""
    return {spec.field: parse(spec, flag_values[spec.flag].value) for spec in field_flags(cls)}


def parse(spec: FieldFlag, value):
    """The field value of a flag's parsed `value`: a comma-separated flag's text as a tuple of
    the field's item type, any other flag's value as it is.

    Raises:
        ValueError: an item is not of the field's item type; the error names the flag.
    """
    if not spec.is_tuple or value is None:
        return value
    try:
        return tuple(spec.item_type(item) for item in value.split(",") if item)
    except ValueError:
        raise ValueError(f"--{spec.flag} must be a comma-separated list of "
                         f"{_ITEMS[spec.item_type]}; got {value!r}.") from None


def _flag_type(where, hint):
    """(item type, whether a tuple) of a field's type hint."""
    arguments = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in arguments:
        rest = [argument for argument in arguments if argument is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
        arguments = typing.get_args(hint)
    is_tuple = typing.get_origin(hint) is tuple
    items = {argument for argument in arguments if argument is not Ellipsis} if is_tuple else {
        hint}
    if len(items) != 1 or next(iter(items)) not in _DEFINE or (is_tuple and bool in items):
        raise TypeError(f"{where} has type {hint}; a flag needs str, int, float or bool, or a "
                        "tuple of str, int or float.")
    return items.pop(), is_tuple


def _help(cls, name):
    for klass in cls.__mro__:
        entry = _args_entries(klass.__dict__.get("__doc__")).get(name)
        if entry is not None:
            meaning = _DEFAULTS_TO.sub("", entry.partition(". ")[2]).replace("`", "")
            if not meaning:  # no sentence after the type, or only "Defaults to X."
                raise TypeError(f"{cls.__name__}'s docstring entry for {name} is not "
                                f"'{name}: type. Meaning.'; got {entry!r}.")
            return meaning
    raise TypeError(f"{cls.__name__}.{name} has no entry in the Args of its docstring; "
                    "document it there (it is the flag's help).")


def _args_entries(doc) -> Dict[str, str]:
    """The entries of a docstring's `Args:` section, by name, each on one line."""
    entries, name, indent = {}, None, None
    lines = (doc or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    for line in lines[starts[0] + 1:] if starts else ():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent  # the first entry's
        if depth < indent:  # the next section
            break
        match = _ENTRY.match(line[indent:]) if depth == indent else None
        if match:
            name = match[1]
            entries[name] = match[2]
        elif name:
            entries[name] += " " + line.strip()
    return {name: " ".join(text.split()) for name, text in entries.items()}
