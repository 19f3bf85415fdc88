"""The command line: `runner COMMAND ...` (and `python -m runner`)."""

from .commands import main

__all__ = ["main"]
