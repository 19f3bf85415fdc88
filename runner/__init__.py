"""runner: declarative YAML workflows for Hugging Face diffusers."""

__version__ = "0.1.0"
