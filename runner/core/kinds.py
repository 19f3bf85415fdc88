"""The kinds of values node outputs carry, and which of them are images."""

IMAGE_KINDS = ("image", "mask", "depth")
OUTPUT_KINDS = (*IMAGE_KINDS, "latents", "images")
