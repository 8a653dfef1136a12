"""Eq. 2, once: the latent diffusion loss every trainer in the engine minimizes.

    L = E_{z~E(x), y, eps~N(0,1), t} || eps - eps_theta(z_t, t, c_theta(y)) ||^2

`draw` takes t ~ U{0..T-1} and then eps ~ N(0, I) from a generator (that order, everywhere,
so a run's draws do not depend on who asks); `loss` noises z to z_t with the model's own
training schedule, runs the UNet through the conditioning seam and returns the MSE against
the model's target (eps, or v for a v-prediction model such as SD 2.x). The inversion loop,
its fixed-batch losses, pivotal tuning and every learner call these two and nothing else.

Options beyond the paper's plain mean:
- `weight` [B]: a per-sample factor (min-SNR weighting, a prior term's share): the loss is
  mean_i(w_i * e_i), e_i the sample's mean squared error.
- `mask` [B, 1, h, w] at pixel or latent resolution: e_i is the mean over the masked
  region only (Custom Diffusion's augmentation, Break-a-Scene's masked loss); a pixel mask is
  area-averaged onto the latent grid.
- `groups` [sizes]: one loss per consecutive group of rows (packed sets share one UNet
  call; each set's loss is its own batch mean).
With neither weight nor mask the value is F.mse_loss over the group, bit for bit the value
the loop computed before it was gathered here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from tinv.engine import conditioning


def training_scheduler(parts) -> DDPMScheduler:
    """The forward-noising schedule the model was trained with (from its scheduler config)."""
    return DDPMScheduler.from_config(parts.scheduler.config)


def target(sched: DDPMScheduler, latents, noise, t) -> torch.Tensor:
    """What the UNet predicts: the noise, or v = alpha_t eps - sigma_t z for v-prediction."""
    if sched.config.prediction_type == "v_prediction":
        return sched.get_velocity(latents, noise, t)
    return noise


def draw(sched: DDPMScheduler, shape, gen: torch.Generator, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [B] on `device`, eps [shape] on the CPU) from `gen`: t first, then eps."""
    t = torch.randint(sched.config.num_train_timesteps, (shape[0],), generator=gen)
    noise = torch.randn(tuple(shape), generator=gen)
    return (t.to(device) if device is not None else t), noise


def loss(parts, sched: DDPMScheduler, z: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
         cond: conditioning.Cond, *, weight: torch.Tensor | None = None, mask: torch.Tensor | None = None,
         groups: list[int] | None = None):
    """Eq. 2 on clean latents z [B, C, h, w] at timesteps t [B] with noise eps [B, C, h, w].

    Returns a scalar tensor, or with `groups` a list of them (one per group of rows)."""
    noise = noise.to(z)
    pred = conditioning.eps(parts.unet, sched.add_noise(z, noise, t).to(parts.dtype), t, cond.to(parts.dtype))
    goal = target(sched, z, noise, t)
    sizes = groups or [z.shape[0]]
    if weight is None and mask is None:
        out = [F.mse_loss(p, y) for p, y in zip(pred.float().split(sizes), goal.float().split(sizes))]
    else:
        err = (pred.float() - goal.float()) ** 2
        if mask is not None:
            m = _on_latents(mask, z).float()
            per = (err * m).sum(dim=(1, 2, 3)) / (m.expand_as(err).sum(dim=(1, 2, 3))).clamp_min(1e-8)
        else:
            per = err.mean(dim=(1, 2, 3))
        if weight is not None:
            per = per * weight.to(per)
        out = [p.mean() for p in per.split(sizes)]
    return out if groups else out[0]


def _on_latents(mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A [B, 1, H, W] (or [B, H, W]) mask on z's grid: area-averaged when it is finer."""
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.shape[0] != z.shape[0] or mask.shape[1] != 1:
        raise ValueError(f"a loss mask is [B, 1, H, W] with B = {z.shape[0]}, got {tuple(mask.shape)}")
    mask = mask.to(z.device, torch.float32)
    if tuple(mask.shape[-2:]) != tuple(z.shape[-2:]):
        mask = F.interpolate(mask, size=tuple(z.shape[-2:]), mode="area")
    return mask
