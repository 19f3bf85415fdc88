"""Errors of the models layer that several of its modules raise."""

from ..core.errors import Refused


class NodeInputError(Refused, ValueError):
    """The node's inputs cannot be used as given; the message says why, `hint` (or the message) how to fix it."""


class ModelUnavailable(Refused, RuntimeError):
    """The model cannot be loaded here; the message says why, `hint` (or the message) how to get it."""
