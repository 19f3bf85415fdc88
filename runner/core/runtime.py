"""The run-time options of generation nodes (workflow and node level), named once for the language that offers them
and the models that apply them."""

# the options a workflow sets for every node that takes them (a node's own value wins)
RUNTIME_OPTIONS = ("vae_slicing", "channels_last", "attention", "step_cache")
# diffusers' attention backends a denoiser can be set to (set_attention_backend); native: PyTorch's SDPA, the default
ATTENTION_BACKENDS = ("native", "_native_math", "_native_efficient", "_native_flash", "_native_cudnn", "flex", "flash",
                      "_flash_3", "sage", "xformers")
# the step caches diffusers applies to transformer denoisers (enable_cache): runner's name -> diffusers' config class
STEP_CACHES = {"first_block": "FirstBlockCacheConfig", "taylorseer": "TaylorSeerCacheConfig"}
# the settings each takes (the rest of its config keeps diffusers' defaults)
STEP_CACHE_SETTINGS = {"first_block": ("threshold",),
                       "taylorseer": ("cache_interval", "disable_cache_before_step", "disable_cache_after_step",
                                      "max_order")}
