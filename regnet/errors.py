"""The exception hierarchy: every error regnet raises on purpose is a ``RegnetError``."""


class RegnetError(Exception):
    """Root of every error raised by regnet."""


def _short(text, limit=80):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(RegnetError, ValueError):
    """A model spec or component configuration is invalid.

    ``layer`` (index and name) and ``field`` say where, when known.
    """

    def __init__(self, message, *, layer=None, field=None):
        self.message = message  # without the "layer ..., field ...: " prefix
        self.layer = layer
        self.field = field
        where = []
        if layer is not None:
            where.append(f"layer {_short(layer)}")
        if field is not None:
            where.append(f"field '{_short(field)}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownComponentError(ConfigError, LookupError):
    """A name that no registry (built-in or plugin) provides."""


class PluginError(RegnetError):
    """A plugin failed to load, clashes with another component, or is not a valid component."""


class ShapeError(RegnetError, ValueError):
    """Tensor shapes do not fit together. ``field``: the config field that does not fit, if any."""

    def __init__(self, message, *, field=None):
        self.field = field
        super().__init__(message)


class WeightsMismatchError(RegnetError, ValueError):
    """Stored weights do not match the model they are loaded into."""


class FileFormatError(RegnetError, OSError):
    """A model file is missing, unreadable, corrupted, unsafe or of an unknown format version."""


class IntegrityError(FileFormatError):
    """A file's checksum does not match the recorded one."""


class MissingDependencyError(RegnetError, ImportError):
    """An optional part of regnet needs a package that is not installed (the message says which extra)."""


class DataError(RegnetError, ValueError):
    """Input data or labels are malformed."""


class DownloadError(DataError):
    """A data set could not be fetched or verified."""


class TrainingDivergedError(RegnetError, FloatingPointError):
    """The loss or a gradient became NaN or infinite during training."""

    def __init__(self, message, *, epoch=None, batch=None):
        self.epoch = epoch
        self.batch = batch
        super().__init__(message)
