"""The engine: models, pseudo-words, the conditioning seam, the inversion loop, pivotal tuning,
DDIM inversion, sampling, exports, checkpoints. Plain dataclasses in, no Hydra, no config dicts."""
