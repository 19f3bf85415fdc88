"""Leaf modules every layer may import: they import nothing else of runner's."""
