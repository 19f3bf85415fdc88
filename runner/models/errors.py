"""Errors of the models layer that several of its modules raise."""


class NodeInputError(ValueError):
    """The node's inputs cannot be used as given; the message says why and how to fix it."""
