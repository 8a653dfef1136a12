"""DVAR early stopping (Voronov et al. 2023, "Is This Loss Informative? Faster Text-to-Image
Customization by Tracking Objective Dynamics", arXiv 2302.04841).

The training loss of textual inversion is too noisy to show convergence: every step draws
new images, timesteps, noise and captions. DVAR evaluates the same objective on ONE batch
of (latent, timestep, noise, caption) fixed for the whole run, L_det, after every optimizer
step, and stops at the first step t >= N where

    Var(L_det[t-N+1 .. t]) / Var(L_det[1 .. t]) < alpha

i.e. once the last N evaluations vary by less than a fraction alpha of how much the whole
run has varied: the descent is over and what is left is a plateau.

The values are the authors' for Textual Inversion, from their public code
(github.com/yandex-research/DVAR, README "DVAR": --early_stop_patience 310
--early_stop_eps 0.15 for --method inversion; early_stopping.py VarEarlyStopper:
np.var(history[-window:]) / np.var(history) < eps, population variances, checked once
the history holds a window; --early_stop_freq 1, --eval_batch_size 4 by default).
The paper's abstract (v3) reports adaptation "up to 8 times faster with no significant
drops in quality".

Our fixed batch is fixed_eval_loss's (tinv/engine/inversion.py) at 4 pairs: posterior-mean
latents, timesteps and noise from one seeded generator, and one prompt (the first
template); the authors fix one VAE sample per image and captions drawn once from their
templates. Either way nothing in it changes between steps, which is what DVAR needs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

WINDOW = 310        # N, optimizer steps
AUTHORS_BUDGET = 6100   # their textual inversion's --max_train_steps: N is 310/6100 of the run
THRESHOLD = 0.15    # alpha
BATCH = 4           # (image, timestep, noise) pairs in the fixed batch
SEED = 0            # the fixed batch's draw; the same as fixed_eval_loss's


def scaled_window(steps: int, share: float = WINDOW / AUTHORS_BUDGET) -> int:
    """N for a run of `steps`: the same share of the run as the authors' 310 of 6,100 (the
    criterion compares variances over spans of the run, so its window is one too)."""
    return max(2, round(share * steps))


def variance_ratio(losses: Sequence[float], window: int) -> float | None:
    """Var(last `window`) / Var(all), population variances; None before a full window.

    A series that never moved has nothing left to learn: its ratio is 0, not 0/0."""
    if len(losses) < window:
        return None
    x = np.asarray(losses, dtype=np.float64)
    if x.min() == x.max():      # (np.var of equal floats can be rounding noise, not 0)
        return 0.0
    return float(x[-window:].var() / x.var())


def should_stop(losses: Sequence[float], window: int = WINDOW, threshold: float = THRESHOLD) -> bool:
    ratio = variance_ratio(losses, window)
    return ratio is not None and ratio < threshold
