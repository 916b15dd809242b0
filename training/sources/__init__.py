"""Data sources: one class per kind of data, behind one small interface (`base.Source`).

`open_source(config)` gives the first source of `SOURCES` that accepts `config.dataset`:
`"synthetic"`, a folder of TFRecord files (`train-*`, no `train/` sub-folder), an image folder,
or else a TFDS name. A new kind of data is one new `base.Source` subclass added to `SOURCES`
(`tfrecord.TfrecordSource` is such a one).

>>> from training.data_config import DataConfig
>>> source = open_source(DataConfig(dataset="synthetic", num_classes=3))
>>> source.describe().class_names
('class_0', 'class_1', 'class_2')
>>> plan(source.config, source.describe()).augmentation
'cifar'
"""

from training.data_config import DataConfig
from training.sources.base import Description, Plan, Source, Splits, plan  # noqa: F401
from training.sources.folder import ImageFolderSource
from training.sources.synthetic import SyntheticSource
from training.sources.tfds import TfdsSource
from training.sources.tfrecord import TfrecordSource

SOURCES = (SyntheticSource, TfrecordSource, ImageFolderSource, TfdsSource)


def open_source(config: DataConfig) -> Source:
    """The source that reads `config.dataset` (not yet read: see `Source.describe`)."""
    return next(kind for kind in SOURCES if kind.accepts(config))(config)
