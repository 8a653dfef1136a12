"""Evaluation metrics (paper section 5.1): CLIP (open_clip) and DINO (timm) encoders,
the reconstruction/editability scores with bootstrap intervals, and the toy-world oracle.

Metric names in a result row: reconstruction_clip, editability_clip_meanemb (the paper),
editability_clip_persample (the public code), reconstruction_dino, reconstruction_oracle,
editability_oracle.
"""
