"""Errors of the models layer that several of its modules raise."""


class NodeInputError(ValueError):
    """The node's inputs cannot be used as given; the message says why, `hint` (or the message) how to fix it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded here; the message says why, `hint` (or the message) how to get it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint
