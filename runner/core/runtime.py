"""The run-time options of generation nodes (workflow and node level), named once for the language that offers them
and the models that apply them."""

from .errors import Refused

# the options a workflow sets for every node that takes them (a node's own value wins)
RUNTIME_OPTIONS = ("vae_slicing", "channels_last", "attention", "step_cache", "compile", "quantize")
# diffusers' attention backends a denoiser can be set to (set_attention_backend); native: PyTorch's SDPA, the default
ATTENTION_BACKENDS = ("native", "_native_math", "_native_efficient", "_native_flash", "_native_cudnn", "flex", "flash",
                      "_flash_3", "sage", "xformers")
# the step caches diffusers applies to transformer denoisers (enable_cache): runner's name -> diffusers' config class
STEP_CACHES = {"first_block": "FirstBlockCacheConfig", "taylorseer": "TaylorSeerCacheConfig"}
# the settings each takes (the rest of its config keeps diffusers' defaults)
STEP_CACHE_SETTINGS = {"first_block": ("threshold",),
                       "taylorseer": ("cache_interval", "disable_cache_before_step", "disable_cache_after_step",
                                      "max_order")}
# torch.compile's modes (compile: {mode: ...}); default is torch's own
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the quantizations a pipeline's components load with (diffusers' PipelineQuantizationConfig): runner's name -> (the
# package that does it, its config as diffusers' docs write it, whether it needs CUDA)
QUANTIZATIONS = {"int8": ("torchao", "TorchAoConfig(Int8WeightOnlyConfig())", False),
                 "fp8": ("torchao", "TorchAoConfig(Float8WeightOnlyConfig())", True),
                 "nf4": ("bitsandbytes", 'BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")', True)}
# which pipeline components each part of `quantize:` names (those a checkpoint lacks are left out)
QUANTIZED_PARTS = {"denoiser": ("unet", "transformer"), "text_encoders": ("text_encoder", "text_encoder_2", "text_encoder_3")}
# the extra that installs each package
QUANTIZATION_EXTRAS = {"torchao": "pip install 'runner[quantize]' (torchao)",
                       "bitsandbytes": "pip install bitsandbytes (CUDA only)"}


class DeviceRefused(Refused):
    """A run-time option that this run's device or installed packages cannot serve; `field`: its path in the node."""

    def __init__(self, message: str, hint: str, field: tuple):
        super().__init__(message, hint)
        self.field = field


def quantized_parts(value) -> dict[str, str]:
    """`quantize:` as {part: quantization}: a bare name quantizes the denoiser; parts left out are not quantized."""
    if not value:
        return {}
    if isinstance(value, str):
        return {"denoiser": value}
    data = value if isinstance(value, dict) else value.model_dump(exclude_none=True)
    return {part: data[part] for part in QUANTIZED_PARTS if data.get(part)}


def device_problems(values: dict, device: str) -> list[tuple[tuple, str, str]]:
    """What a node's run-time options ask of the device and the installed packages that they lack: (the field's path,
    why, the fix). Reads no torch: a plan checks it before anything runs."""
    import importlib.util

    problems = []
    for part, name in quantized_parts(values.get("quantize")).items():
        package, _config, cuda = QUANTIZATIONS[name]
        path = ("quantize",) if isinstance(values.get("quantize"), str) else ("quantize", part)
        if cuda and not device.startswith("cuda"):
            problems.append((path, f"{name} needs a CUDA device ({package}), and this run is on {device}",
                             "use int8 (torchao, every device), or run on a CUDA machine (device: cuda)"))
        elif importlib.util.find_spec(package) is None:
            problems.append((path, f"{name} needs the {package} package, which is not installed",
                             QUANTIZATION_EXTRAS[package]))
    return problems
