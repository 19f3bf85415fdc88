"""Textual-inversion embeddings a model entry names (`embeddings: {TOKEN: SOURCE}`), loaded into the checkpoint's
text encoders once, with the checkpoint, as diffusers' docs load them (`pipe.load_textual_inversion(..., token=...)`;
an SDXL embedding's clip_l and clip_g vectors into the first and second text encoder). They are part of the model's
identity, so a pipeline with embeddings is one of its own (its text encoders are not shared with the same checkpoint
loaded without them)."""

from __future__ import annotations


from .sources import ModelUnavailable, embedding_sources

WEIGHT_NAME = "learned_embeds.safetensors"  # what diffusers looks for in a folder or hub repository


def load_embeddings(registry, pipe, source) -> None:
    """Load each embedding of the entry into `pipe` (ModelUnavailable, naming it, when it cannot serve)."""
    embeddings = embedding_sources(source)
    if not embeddings:
        return
    if not hasattr(pipe, "load_textual_inversion"):
        raise ModelUnavailable(f"model '{source.label}' ({type(pipe).__name__}) takes no textual-inversion embeddings "
                               "in diffusers", "remove embeddings: from its model entry (SD 1.x/2.x and SDXL take them)")
    from safetensors.torch import load_file

    for token, embedding in embeddings.items():
        path = registry.weights_file(embedding, "embedding", WEIGHT_NAME)
        if path.suffix.lower() != ".safetensors":
            raise ModelUnavailable(f"embedding '{embedding.label}' (token {token}) is not a .safetensors file; runner "
                                   "reads embeddings as safetensors only", "use its .safetensors version")
        vectors = load_file(str(path))
        try:
            if set(vectors) <= {"clip_l", "clip_g"} and "clip_g" in vectors:  # SDXL's, one set per text encoder
                if getattr(pipe, "text_encoder_2", None) is None:
                    raise ModelUnavailable(
                        f"embedding '{embedding.label}' (token {token}) is an SDXL one (clip_l and clip_g vectors), and "
                        f"'{source.label}' has one text encoder", "use an embedding made for this model's family")
                pipe.load_textual_inversion(vectors["clip_g"], token=token, text_encoder=pipe.text_encoder_2,
                                            tokenizer=pipe.tokenizer_2)
                pipe.load_textual_inversion(vectors["clip_l"], token=token, text_encoder=pipe.text_encoder,
                                            tokenizer=pipe.tokenizer)
            else:
                pipe.load_textual_inversion(vectors, token=token)
        except ValueError as exc:  # another width than the text encoder's, a token the tokenizer has already
            raise ModelUnavailable(f"embedding '{embedding.label}' (token {token}) does not fit '{source.label}': {exc}",
                                   "use an embedding made for this model (its vectors are as wide as the text "
                                   "encoder's), under a token of its own") from None
