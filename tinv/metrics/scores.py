"""The paper's CLIP-space metrics (section 5.1), from unit-norm embeddings.

reconstruction: mean cosine over every (training image, sample) pair of the samples of
    "A photo of S*".
editability, two ways, both against the prompt's text with the placeholder deleted:
    meanemb   (the paper): cosine between the MEAN image embedding of the samples and
              the text embedding;
    persample (the authors' public code): MEAN of the per-sample cosines.
They differ (the mean of unit vectors is shorter than one); a row holds both.
"""
from __future__ import annotations

import numpy as np

from .bootstrap import cells_ci, matrix_ci


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def pair_matrix(train: np.ndarray, samples: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """[T, S] cosines of training images against samples. exclude_self (image-only: the
    samples ARE the training images) leaves each image's pair with itself out (NaN)."""
    m = unit(train) @ unit(samples).T
    if exclude_self and m.shape[0] == m.shape[1] and m.shape[0] > 1:
        np.fill_diagonal(m, np.nan)
    return m


def clipscore(cosines: np.ndarray) -> np.ndarray:
    """CLIPScore's scale (Hessel et al. 2021, as Custom Diffusion reports CLIP metrics):
    2.5 x max(cos, 0); NaN (a left-out pair) stays NaN."""
    return 2.5 * np.where(np.isnan(cosines), np.nan, np.maximum(cosines, 0.0))


def reconstruction(matrices: list[np.ndarray], n_boot: int, seed: int) -> dict:
    """Mean over cells of the mean pair cosine; per-sample scores are column means."""
    value = float(np.mean([np.nanmean(m) for m in matrices]))
    per_sample = np.concatenate([np.nanmean(m, axis=0) for m in matrices])
    return dict(value=value, scores=per_sample, ci=matrix_ci(matrices, n_boot, seed))


def _meanemb_stat(text: np.ndarray):
    def stat(x: np.ndarray) -> np.ndarray:          # x: [B, S, D] resampled unit embeddings
        return unit(x.mean(axis=1)) @ text
    return stat


def editability(cells: list[tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int) -> dict:
    """cells: (sample embeddings [S, D], text embedding [D]). Returns both variants.

    Per-sample scores: persample -> each sample's cosine; meanemb -> each sample's share
    cos(s_i, t) / ||mean_j s_j|| of its cell's value (they average to it exactly; a
    bootstrap over them ignores the spread of the norm, so the row's own `ci` resamples
    the embeddings instead).
    """
    embs = [unit(e) for e, _ in cells]
    texts = [unit(t) for _, t in cells]
    cos = [e @ t for e, t in zip(embs, texts)]
    norms = [np.linalg.norm(e.mean(axis=0)) for e in embs]
    persample = [float(c.mean()) for c in cos]
    meanemb = [float(c.mean() / nrm) for c, nrm in zip(cos, norms)]
    return {
        "persample": dict(value=float(np.mean(persample)), cells=persample,
                          scores=np.concatenate(cos),
                          ci=cells_ci(cos, lambda x: x.mean(axis=1), n_boot, seed)),
        "meanemb": dict(value=float(np.mean(meanemb)), cells=meanemb,
                        scores=np.concatenate([c / nrm for c, nrm in zip(cos, norms)]),
                        ci=cells_ci(embs, [_meanemb_stat(t) for t in texts], n_boot, seed)),
    }
