"""Evaluation metrics (paper section 5.1): CLIP (open_clip) and DINO (timm; the toy CLIP's
image tower on the toy world) encoders,
the reconstruction/editability scores with bootstrap intervals, and the toy-world oracle.

Metric names in a result row: reconstruction_clip, editability_clip_meanemb (the paper),
editability_clip_persample (the public code), reconstruction_dino, reconstruction_oracle,
editability_oracle; with the oracle also per attribute (reconstruction_oracle_named,
_unnamed, _<attribute>; identity_oracle and its splits), and for a learned word
embedding_norm and embedding_dist_init.
"""

TINY_CLIP = "tinv-tiny-clip"   # a random-weight open_clip config for tests (no download)

# One line per headline metric for the end of a job (run.py) and for readers of a row;
# higher is better for the scores. The per-attribute splits are in the row, not the log.
MEANINGS = {
    "reconstruction_clip": 'CLIP image similarity of "A photo of S*" samples to the training images',
    "editability_clip_meanemb": "CLIP similarity of the mean sample to its prompt with S* deleted (the paper's)",
    "editability_clip_persample": "the same, averaged per sample (the authors' public code)",
    "reconstruction_dino": 'DINO image similarity of "A photo of S*" samples to the training images',
    "reconstruction_oracle": "share of the concept's attributes (unnamed ones too) the oracle finds in its samples",
    "editability_oracle": "share of the attributes each prompt asks for that the oracle finds",
    "reconstruction_oracle_unnamed": "the same for the attributes no word says (accent, outline): only a learned word carries them",
    "identity_oracle": "share of the concept's attributes kept in the edited samples (those a prompt changes left out)",
    "embedding_norm": "mean norm of the learned vectors (no interval: one inversion)",
    "embedding_dist_init": "distance of the learned vectors from their initializer word (no interval)",
}
