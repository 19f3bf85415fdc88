"""The libraries' own output (progress bars, advisory warnings) kept off runner's progress display.

Its own module so that the tiny-model builder and the registry can both call it without importing each other.
"""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """Silence progress bars and advisory warnings of the libraries; errors still surface as exceptions."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import logging

    # torchao (quantize:), which diffusers imports where it is installed, logs each CUDA kernel library it cannot load
    # on a CPU build of torch, and torch logs its pytree registrations: advice, not errors
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    import diffusers
    import huggingface_hub
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
