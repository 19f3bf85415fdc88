"""Node fields that map one to one onto diffusers call arguments (shared by the specs and the call checks)."""

# node field -> pipeline call argument
CALL_ARGUMENTS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "width": "width",
    "height": "height",
    "num_images": "num_images_per_prompt",
    "strength": "strength",
    "clip_skip": "clip_skip",
    "padding_mask_crop": "padding_mask_crop",
    "pag_scale": "pag_scale",
}

# controlnet item field -> pipeline call argument (a list of values with several ControlNets)
CONTROLNET_ITEM_ARGUMENTS = {
    "scale": "controlnet_conditioning_scale",
    "start": "control_guidance_start",
    "end": "control_guidance_end",
}
