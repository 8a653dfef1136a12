"""sample(): the stock pipelines' DDIM + guidance, with fixed per-seed noise and prompt batching."""
import pytest
import torch
from diffusers import DDIMScheduler, LDMTextToImagePipeline, StableDiffusionPipeline

from tinv.engine.models import tiny_ldm_parts, tiny_sd_parts
from tinv.engine.pseudo_words import add_pseudo_word
from tinv.engine.sampling import initial_noise, sample

PROMPTS = ["a photo of a star", "an oil painting of a cat"]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module", params=["sd", "ldm"])
def parts(request):
    return tiny_sd_parts() if request.param == "sd" else tiny_ldm_parts()


def _stock(parts, prompt, x_T, steps, guidance):
    """The diffusers pipeline of the family, run from the same x_T."""
    sched = DDIMScheduler.from_config(parts.scheduler.config)
    n = len(x_T)
    if parts.family == "sd":
        pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder,
                                       tokenizer=parts.tokenizer, unet=parts.unet, scheduler=sched,
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        out = pipe(prompt, latents=x_T, num_images_per_prompt=n, num_inference_steps=steps,
                   guidance_scale=guidance, height=parts.resolution, width=parts.resolution,
                   output_type="pt")
    else:
        pipe = LDMTextToImagePipeline(vqvae=parts.vae, bert=parts.text_encoder,
                                      tokenizer=parts.tokenizer, unet=parts.unet, scheduler=sched)
        # This pipeline assumes 8x downsampling; ask for the size that gives our latent side.
        side = x_T.shape[-1] * 8
        out = pipe([prompt] * n, latents=x_T, num_inference_steps=steps, guidance_scale=guidance,
                   height=side, width=side, output_type="pt")
    return torch.as_tensor(out.images).float()


def test_matches_stock_pipeline_on_same_noise(parts):
    ours = sample(parts, PROMPTS, SEEDS, steps=6, guidance=5.0, batch_size=4, progress=False)
    assert ours.shape == (6, 3, parts.resolution, parts.resolution)
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    x_T, _ = initial_noise(parts, SEEDS)
    ref = _stock(parts, PROMPTS[1], x_T, steps=6, guidance=5.0)
    # image i = prompts[i // 3], seeds[i % 3]: the second prompt's images are 3..5
    torch.testing.assert_close(ours[3:], ref, atol=1e-4, rtol=0)


def test_seed_fixes_noise_whatever_the_prompt_or_batch(parts):
    grid = sample(parts, PROMPTS, SEEDS, steps=4, guidance=3.0, batch_size=4, progress=False)
    alone = sample(parts, [PROMPTS[0]], [1], steps=4, guidance=3.0, batch_size=1, progress=False)
    torch.testing.assert_close(alone[0], grid[1], atol=1e-5, rtol=0)
    x_a, _ = initial_noise(parts, [7])
    x_b, _ = initial_noise(parts, [7, 8])
    assert torch.equal(x_a[0], x_b[0]) and not torch.equal(x_b[0], x_b[1])


def test_a_prompt_given_per_seed_draws_each_seed_under_its_own_text(parts):
    """The human captions in turn: seed i under text i; each image is the one its text draws
    at that seed in the plain grid (same x_T, same conditioning), the batch layout aside."""
    grid = sample(parts, PROMPTS, SEEDS, steps=4, guidance=3.0, batch_size=4, progress=False)
    turns = [PROMPTS[1], PROMPTS[0], PROMPTS[1]]
    mixed = sample(parts, [PROMPTS[0], turns], SEEDS, steps=4, guidance=3.0, batch_size=4, progress=False)
    assert mixed.shape == grid.shape
    torch.testing.assert_close(mixed[:3], grid[:3], atol=1e-5, rtol=0)        # a plain row stays as it was
    for i, text in enumerate(turns):
        torch.testing.assert_close(mixed[3 + i], grid[3 * PROMPTS.index(text) + i], atol=1e-5, rtol=0)
    assert (mixed[4] - grid[4]).abs().max() > 1e-3        # seed 1 really drew the other text
    with pytest.raises(ValueError, match="one text for each of the 3 seeds"):
        sample(parts, [PROMPTS[:2]], SEEDS, steps=2, progress=False)


def test_guidance_and_prompt_change_the_images(parts):
    g1 = sample(parts, PROMPTS, [0], steps=4, guidance=1.0, progress=False)
    g7 = sample(parts, PROMPTS, [0], steps=4, guidance=7.0, progress=False)
    assert (g1 - g7).abs().max() > 1e-3
    assert (g7[0] - g7[1]).abs().max() > 1e-3


def test_eta_noise_is_per_seed_and_independent_of_batching(parts):
    a = sample(parts, PROMPTS, SEEDS, steps=4, eta=1.0, batch_size=2, progress=False)
    b = sample(parts, PROMPTS, SEEDS, steps=4, eta=1.0, batch_size=64, progress=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    deterministic = sample(parts, PROMPTS, SEEDS, steps=4, eta=0.0, batch_size=64, progress=False)
    assert (a - deterministic).abs().max() > 1e-4


def test_multi_vector_placeholder_expands_to_all_its_tokens():
    parts = tiny_sd_parts()
    word = add_pseudo_word(parts, "<s*>", 2, generator=torch.Generator().manual_seed(0))
    before = sample(parts, ["a photo of <s*>"], [0], steps=3, progress=False)
    with torch.no_grad():  # change only the SECOND vector: visible only if "<s*>" expands
        parts.input_embeddings().weight[word.token_ids[1]] = torch.randn(
            parts.input_embeddings().weight.shape[1], generator=torch.Generator().manual_seed(1))
    after = sample(parts, ["a photo of <s*>"], [0], steps=3, progress=False)
    assert (before - after).abs().max() > 1e-4


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts="a photo of a star"), "prompts"),
    (dict(seeds=[]), "seeds"),
    (dict(guidance=0.5), "guidance"),
    (dict(batch_size=0), "batch_size"),
    (dict(steps=0), "steps"),
])
def test_bad_arguments_are_named(kwargs, message):
    parts = tiny_sd_parts()
    args = dict(prompts=PROMPTS, seeds=SEEDS, steps=2, progress=False) | kwargs
    with pytest.raises(ValueError, match=message):
        sample(parts, **args)


def test_streams_compute_each_batch_as_alone(parts):
    """Several batches at once (one thread each) give the images one stream gives, bit for
    bit, eta > 0 noise included; the module setting is what sample() uses by default."""
    from tinv.engine import sampling
    args = dict(prompts=PROMPTS, seeds=SEEDS, steps=3, eta=1.0, batch_size=2, progress=False)
    one = sample(parts, **args, streams=1)
    assert torch.equal(sample(parts, **args, streams=3), one)
    assert torch.equal(sample(parts, **args, streams=8), one)     # more streams than batches
    try:
        assert sampling.set_streams(2) == 2
        assert torch.equal(sample(parts, **args), one)
    finally:
        sampling.set_streams(1)
    with pytest.raises(ValueError, match="streams"):
        sampling.set_streams(0)
