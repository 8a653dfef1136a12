"""Bipartite inversion: DDIM inversion to x_T, then regeneration from that fixed x_T.

Tolerances, measured on the tiny random models (relative L2 error of the regenerated
latent, same prompt, guidance 1, same steps):
  closed form (the paper's): 20 steps ~0.5, 80 steps ~0.2, 200 steps ~0.1. It is first
    order in the step size, and a random UNet's eps is not a denoiser, so eps(x_{t-1}, t)
    and eps(x_t, t) differ far more than a trained model's; we check that the error
    shrinks with finer steps and stays under 0.35 at 80 steps.
  with 3 fixed-point iterations per step: ~1e-2 at 20 steps, ~1e-3 at 50; we hold 20
    steps to 0.05, i.e. the inversion is the exact inverse of the DDIM sampler up to the
    fixed-point solve.
"""
import pytest
import torch

from tinv.engine.ddim_inversion import bipartite, ddim_invert, regenerate
from tinv.engine.models import tiny_ldm_parts, tiny_sd_parts
from tinv.engine.pseudo_words import add_pseudo_word

PROMPT = "a photo of a star"


@pytest.fixture(scope="module", params=["sd", "ldm"])
def parts(request):
    return tiny_sd_parts() if request.param == "sd" else tiny_ldm_parts()


@pytest.fixture(scope="module")
def latents():
    # Unit-variance latents, like SD's scaled VAE latents (the tiny VAE's are ~0.04, which
    # would make a relative error meaningless).
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))


def _round_trip_error(parts, latents, steps, fixed_point_iters=0):
    x_T = ddim_invert(parts, latents, PROMPT, steps, fixed_point_iters, progress=False)
    back = regenerate(parts, x_T, PROMPT, guidance=1.0, steps=steps, decode=False)
    return ((back - latents).norm() / latents.norm()).item()


def test_closed_form_inversion_reconstructs_and_improves_with_steps(parts, latents):
    coarse, fine = _round_trip_error(parts, latents, 20), _round_trip_error(parts, latents, 80)
    assert fine < 0.35
    assert fine < 0.6 * coarse          # first order: 4x finer steps, error ~3x smaller


def test_fixed_point_inversion_is_exact_within_tolerance(parts, latents):
    assert _round_trip_error(parts, latents, 20, fixed_point_iters=3) < 0.05


def test_inverted_noise_is_not_the_latent(parts, latents):
    x_T = ddim_invert(parts, latents, PROMPT, 10, progress=False)
    assert x_T.shape == latents.shape
    assert (x_T - latents).abs().max() > 0.5


def test_bipartite_regenerates_every_prompt_and_guidance_from_one_x_T():
    parts = tiny_sd_parts()
    add_pseudo_word(parts, "<s*>", 1, generator=torch.Generator().manual_seed(0))
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    prompts, guidances = ["a photo of <s*> on the moon", "an oil painting of <s*>"], [1.0, 7.0]
    res = bipartite(parts, z, prompts, guidances, "<s*>", steps=5, progress=False)
    assert res.x_T.shape == z.shape
    torch.testing.assert_close(res.x_T, ddim_invert(parts, z, "A photo of <s*>", 5, progress=False))
    assert [len(row) for row in res.images] == [2, 2]
    for row in res.images:
        for imgs in row:
            assert imgs.shape == (3, 3, 32, 32) and 0 <= imgs.min() and imgs.max() <= 1
    assert (res.images[0][0] - res.images[1][0]).abs().max() > 1e-3   # guidance matters
    assert (res.images[1][0] - res.images[1][1]).abs().max() > 1e-3   # the prompt matters


def test_bad_latents_name_their_shape():
    parts = tiny_sd_parts()
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        ddim_invert(parts, torch.zeros(2, 3, 32, 32), PROMPT, 5, progress=False)
