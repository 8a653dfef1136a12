"""Training prompt templates: the 27 object templates of appendix D, the style templates,
and their per-image "dual" forms ("... {S*} with {S_i}") of the authors' public code."""
from __future__ import annotations

OBJECT_TEMPLATES = [
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
    "a cropped photo of a {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
    "a close-up photo of the {}", "a rendition of the {}", "a photo of the clean {}",
    "a rendition of a {}", "a photo of a nice {}", "a good photo of a {}", "a photo of the nice {}",
    "a photo of the small {}", "a photo of the weird {}", "a photo of the large {}",
    "a photo of a cool {}", "a photo of a small {}",
]

STYLE_TEMPLATES = [
    "a painting in the style of {}", "a rendering in the style of {}",
    "a cropped painting in the style of {}", "the painting in the style of {}",
    "a clean painting in the style of {}", "a dirty painting in the style of {}",
    "a dark painting in the style of {}", "a picture in the style of {}",
    "a cool painting in the style of {}", "a close-up painting in the style of {}",
    "a bright painting in the style of {}", "a cropped painting in the style of {}",
    "a good painting in the style of {}", "a close-up painting in the style of {}",
    "a rendition in the style of {}", "a nice painting in the style of {}",
    "a small painting in the style of {}", "a weird painting in the style of {}",
    "a large painting in the style of {}",
]

# Per-image tokens: the shared placeholder, then the image's own token.
OBJECT_DUAL_TEMPLATES = [t + " with {}" for t in OBJECT_TEMPLATES]
STYLE_DUAL_TEMPLATES = [t + " with {}" for t in STYLE_TEMPLATES]

TEMPLATE_SETS = {
    "object": (OBJECT_TEMPLATES, OBJECT_DUAL_TEMPLATES),
    "style": (STYLE_TEMPLATES, STYLE_DUAL_TEMPLATES),
}


# The style templates' medium noun. On a model whose vocabulary makes "painting" a style of
# its own (the toy world: photo, sketch, painting, pixel art), "a painting in the style of
# S*" asks for a painting whatever S* says; model.style_noun names a neutral noun there.
STYLE_NOUN = "painting"


def with_style_noun(text: str, noun: str = STYLE_NOUN) -> str:
    """A style template or prompt with its medium noun "painting" replaced by `noun`."""
    return text if noun == STYLE_NOUN else text.replace(STYLE_NOUN, noun).replace(
        STYLE_NOUN.capitalize(), noun.capitalize())


def templates_for(kind: str, style_noun: str = STYLE_NOUN) -> tuple[list[str], list[str]]:
    """(plain, dual) templates for "object" or "style" (the latter with `style_noun`)."""
    if kind not in TEMPLATE_SETS:
        raise ValueError(f"templates must be one of {sorted(TEMPLATE_SETS)}, got {kind!r}")
    plain, dual = TEMPLATE_SETS[kind]
    if kind != "style" or style_noun == STYLE_NOUN:
        return plain, dual
    return [with_style_noun(t, style_noun) for t in plain], [with_style_noun(t, style_noun) for t in dual]
