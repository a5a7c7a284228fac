"""User-facing errors: the CLI prints their message as one sentence and exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (bad argument, missing file, wrong format)."""


class DataNotFoundError(UserError):
    """A requested data set could not be found in any searched place."""


class UnsupportedLayerError(UserError):
    """A network contains a layer that the graph IR does not support."""
