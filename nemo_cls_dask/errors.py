"""Exceptions with messages that say what was wrong and what to do."""


class NemoClsDaskError(Exception):
    """Base class of this package's errors."""


class ModelNotFoundError(NemoClsDaskError, FileNotFoundError):
    """The model identifier names no local folder, cached repo or reachable hub repo."""


class ModelLoadError(NemoClsDaskError, ValueError):
    """The checkpoint was found but is incomplete or malformed; the message names the file."""


class InputError(NemoClsDaskError, ValueError):
    """The DataFrame or the options given to an operator cannot work together."""
