"""The node catalogue. Importing this package registers every node type (no torch import)."""

from . import generation, images, preprocess  # noqa: F401  (registration side effects)
from .base import NODE_TYPES, NodeType

__all__ = ["NODE_TYPES", "NodeType"]
