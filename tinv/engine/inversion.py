"""Textual Inversion (Eq. 2): the one loop, with every learned-word setup as data.

    v* = argmin_v  E_{z~E(x), y, eps~N(0,1), t} || eps - eps_theta(z_t, t, c_theta(y)) ||^2

The loss itself is tinv/engine/objective.py (`draw`, `loss`), shared with pivotal tuning and
the learners. Only the pseudo-words' vectors learn; the text encoder, UNet and VAE are
frozen. The setups of section 5.2 / appendix A are fields of `InversionConfig`: k vectors,
progressive unlocking, regularization toward the initializer, per-image tokens.
`invert_packed` trains several independent configs through the shared frozen model, each
set's micro-batch in its own UNet call, so each set computes bit for bit what it computes
alone (`one_batch=True`: all sets in one UNet batch, faster, equal to alone up to float
error: each set's loss is its own batch mean, so the summed loss gives every set the
gradient it would get alone, summed in another order).

`stop`: "fixed" runs `steps` optimizer steps (the paper); "dvar" stops a set earlier, at
the first step where DVAR's criterion (tinv/engine/dvar.py) says its fixed-batch loss has
flattened. Packed sets stop independently; the rest of the pack runs on.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from tinv.core import atomic

from tinv.engine import checkpoint, conditioning, dvar, learners, objective, prior
from tinv.engine.data import ConceptImages, LatentCache, cache_latents, load_concept_images
from tinv.engine.embeddings_io import authors_tokens
from tinv.engine.models import Parts
from tinv.engine.objective import training_scheduler
from tinv.engine.pseudo_words import PseudoWord, add_pseudo_word, expand_prompt, learning
from tinv.engine.inversion_config import InversionConfig
from tinv.engine.templates import templates_for
from tinv.engine.progress import bar as progress_bar

CHECKPOINT_NAME = checkpoint.INVERSION_FILE
MAX_PER_IMAGE_TOKENS = 21   # the authors' per-image token list has 21 entries
# The fixed-batch loss (fixed_eval_loss, the eval_loss_before/after of a result) is logged at
# about this many evenly spaced optimizer steps of a run, so rows can say when a setup first
# reached another's final loss (P+'s "converges faster"). A no-grad pass with its own seeds:
# it changes nothing the run computes, and costs about one training step on the toy world,
# so about a tenth of a run's time.
CURVE_POINTS = 30


def _defaults() -> dict:
    """InversionConfig's field defaults: what a checkpoint made before a field existed ran with."""
    return {f.name: f.default if f.default is not MISSING else f.default_factory()
            for f in fields(InversionConfig) if f.default is not MISSING or f.default_factory is not MISSING}


def curve_every(steps: int) -> int:
    """Optimizer steps between two points of the fixed-batch loss curve."""
    return max(1, -(-steps // CURVE_POINTS))


@dataclass
class InversionResult:
    embeds: dict[str, torch.Tensor]       # placeholder -> [k, D] (per-image tokens included)
    losses: list[float]                   # training loss (diffusion + reg) per optimizer step
    lr_effective: float
    steps: int
    lr_rule: str = ""
    diffusion_losses: list[float] = field(default_factory=list)
    eval_loss_before: float = float("nan")    # fixed_eval_loss at the start and the end
    eval_loss_after: float = float("nan")
    token_ids: dict[str, list[int]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    embedding_norm: float = float("nan")      # mean L2 norm of S*'s k vectors
    embedding_dist_init: float = float("nan")  # ||V - V_init|| (Frobenius over the k vectors)
    dvar: dict = field(default_factory=dict)  # stop=dvar: the fixed-batch loss per step, where it stopped
    prior_losses: list[float] = field(default_factory=list)  # prior preservation's weighted term per step
    learner: dict = field(default_factory=dict)  # a successor's {"name", "state"} (tinv/engine/learners)
    curve: list = field(default_factory=list)    # [step, fixed_eval_loss] every curve_every(steps), 0 and the end


class _Set:
    """One independent pseudo-word set under training: its words, data, RNG and optimizer."""

    def __init__(self, parts: Parts, images: ConceptImages, cfg: InversionConfig,
                 class_images: ConceptImages | None = None):
        self.cfg = cfg
        self.images = images
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # Prior preservation's class images: drawn by the model before anything of it trains
        self.class_latents: LatentCache | None = None
        if cfg.prior_preservation:
            self.class_latents = cache_latents(parts, class_images or prior.class_images(parts, cfg))
        word = cfg.initializer_word if cfg.init == "word" else None
        self.word = add_pseudo_word(parts, cfg.placeholder, cfg.num_vectors, word, self.gen)
        self.image_words: list[PseudoWord] = []
        if cfg.per_image_tokens:
            if len(images) > MAX_PER_IMAGE_TOKENS:
                raise ValueError(f"{cfg.placeholder!r}: per-image tokens allow at most "
                                 f"{MAX_PER_IMAGE_TOKENS} images, got {len(images)}")
            base = cfg.placeholder.strip("<>")
            self.image_words = [add_pseudo_word(parts, f"<{base}-img{i}>", 1, None, self.gen)
                                for i in range(len(images))]
        # A successor's own math (tinv/engine/learners): more words, parameters, conditioning.
        self.learner = learners.create(parts, self.word, cfg, self.gen)
        self.learner_words: list[PseudoWord] = self.learner.words() if self.learner else []
        # The authors' file names words by tokens of the STOCK vocabulary: chosen here, where
        # the tokenizer is (exports only see the result).
        self.authors_tokens = authors_tokens(parts.tokenizer, len(self.image_words))
        self.plain, self.dual = templates_for(cfg.templates, cfg.style_noun)
        self.latents: LatentCache = cache_latents(parts, images)
        self.step = 0
        self.losses: list[float] = []
        self.diffusion_losses: list[float] = []
        self.prior_losses: list[float] = []
        self.dvar_losses: list[float] = []        # L_det after each optimizer step (stop=dvar)
        self.curve: list[list] = []               # [step, fixed_eval_loss] (CURVE_POINTS)
        self.stopped_at: int | None = None        # the step DVAR stopped at
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def done(self) -> bool:
        return self.step >= self.cfg.steps or self.stopped_at is not None

    def fixed_batch(self, parts: Parts) -> tuple[LatentCache, torch.Tensor]:
        return self.latents, parts.tokenize([expand_prompt(eval_prompt(self.cfg), self.words)], expand=False)

    def track(self, loss: float) -> None:
        """Log this step's fixed-batch loss; stop when DVAR's criterion says it flattened."""
        self.dvar_losses.append(loss)
        if dvar.should_stop(self.dvar_losses, self.cfg.dvar_window, self.cfg.dvar_threshold):
            self.stopped_at = self.step

    @property
    def words(self) -> list[PseudoWord]:
        return [self.word] + self.image_words + self.learner_words

    def make_optimizer(self) -> None:
        fixed = self.word if self.learner and not self.learner.trains_word else None
        groups = [{"params": [w.vectors for w in self.words if w is not fixed]}]
        if self.learner:
            groups += self.learner.param_groups()
            # Where the learner's tensors start (made the same way again on a resume, so this
            # is the start of the run, not of the resumed part): the row says how far they moved.
            self.learner_start = [t.detach().clone() for t in self.learner_tensors()]
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr_effective, weight_decay=self.cfg.weight_decay)

    def learner_tensors(self) -> list[torch.Tensor]:
        """What the learner trains: its optimizer groups and its own words' vectors."""
        return ([p for g in self.learner.param_groups() for p in g["params"]]
                + [w.vectors for w in self.learner_words])

    def learner_moved(self) -> float:
        """||theta - theta_0|| / ||theta_0|| over every tensor the learner trains: a successor's
        counterpart of embedding_dist_init, so a row shows that its setup trained at all."""
        now = [t.detach().float() for t in self.learner_tensors()]
        start = [t.float() for t in self.learner_start]
        delta = sum(float(((a - b) ** 2).sum()) for a, b in zip(now, start))
        base = sum(float((b ** 2).sum()) for b in start)
        return (delta / base) ** 0.5 if base > 0 else float("inf") if delta > 0 else 0.0

    def draw(self, parts: Parts) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
        """One batch of clean latents, their prompts and a loss mask (None: the whole image; a
        learner's augmentation may set one), from this set's own generator."""
        cfg, g, n = self.cfg, self.gen, self.cfg.batch_size
        idx = torch.randint(len(self.latents), (n,), generator=g)
        flip = torch.rand(n, generator=g) < cfg.flip_p
        latents = self.latents.draw(idx, flip, g).to(parts.device)
        active = {self.word.placeholder: cfg.active_vectors(self.step)}
        prompts = []
        for i in idx.tolist():
            dual = self.image_words and torch.rand((), generator=g).item() < cfg.per_image_prob
            pool = self.dual if dual else self.plain
            template = pool[torch.randint(len(pool), (), generator=g).item()]
            text = (template.format(cfg.subject, self.image_words[i].placeholder) if dual
                    else template.format(cfg.subject))
            prompts.append(expand_prompt(text, self.words, active))
        if self.learner:
            return self.learner.augment(parts, self.images, idx, flip, latents, prompts)
        return latents, prompts, None

    def regularizer(self) -> torch.Tensor:
        cfg = self.cfg
        if cfg.reg_weight == 0:
            return torch.zeros((), device=self.word.vectors.device)
        d = self.word.vectors - self.word.init.to(self.word.vectors)
        if cfg.reg_form == "l2":
            return cfg.reg_weight * (d ** 2).sum()
        return cfg.reg_weight * (d @ d.T).mean()   # the public code's form, cross terms included

    def prior_loss(self, parts: Parts, sched) -> torch.Tensor | None:
        """prior_loss_weight x Eq. 2 on a batch of class images under the class prompt (DreamBooth's
        Eq. 2, second term), the batch drawn from this set's own generator."""
        if self.class_latents is None:
            return None
        g, n = self.gen, self.cfg.batch_size
        idx = torch.randint(len(self.class_latents), (n,), generator=g)
        flip = torch.rand(n, generator=g) < self.cfg.flip_p
        z = self.class_latents.draw(idx, flip, g).to(parts.device)
        t, noise = objective.draw(sched, z.shape, g, parts.device)
        # the class prompt has no S*: it needs gradients only where the text encoder trains
        with torch.set_grad_enabled(bool(self.learner and self.learner.trains_text)):
            cond = conditioning.encode(parts, parts.tokenize([self.cfg.class_text]))
        return self.cfg.prior_loss_weight * objective.loss(parts, sched, z, t, noise, cond.expand(n))

    def state(self) -> dict:
        return {"placeholder": self.cfg.placeholder, "config": asdict(self.cfg), "step": self.step,
                "vectors": {w.placeholder: w.vectors.detach().clone() for w in self.words},
                "optimizer": self.optimizer.state_dict(), "generator": self.gen.get_state(),
                "losses": list(self.losses), "diffusion_losses": list(self.diffusion_losses),
                "prior_losses": list(self.prior_losses),
                "dvar_losses": list(self.dvar_losses), "stopped_at": self.stopped_at,
                "curve": [list(p) for p in self.curve],
                **({"learner": self.learner.state()} if self.learner else {})}

    def load_state(self, state: dict, path: Path) -> None:
        # A field a checkpoint lacks was added since: the run used its default (tinv.harness.identity)
        if {**_defaults(), **state["config"]} != asdict(self.cfg):
            raise ValueError(f"checkpoint {str(path)!r} was written for a different config of "
                             f"{self.cfg.placeholder!r}; use another checkpoint folder or delete it")
        with torch.no_grad():
            for w in self.words:
                w.vectors.copy_(state["vectors"][w.placeholder])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        self.step = state["step"]
        self.losses, self.diffusion_losses = list(state["losses"]), list(state["diffusion_losses"])
        self.prior_losses = list(state.get("prior_losses", []))
        self.dvar_losses, self.stopped_at = list(state.get("dvar_losses", [])), state.get("stopped_at")
        self.curve = [list(p) for p in state.get("curve", [])]   # none in checkpoints from before it
        if self.learner:
            self.learner.load_state(state["learner"])

    def result(self, before: float, after: float) -> InversionResult:
        v = self.word.vectors.detach().float()
        return InversionResult(
            embedding_norm=float(v.norm(dim=-1).mean()),
            embedding_dist_init=float((v - self.word.init.to(v)).norm()),
            embeds={w.placeholder: w.vectors.detach().clone() for w in self.words},
            losses=list(self.losses), diffusion_losses=list(self.diffusion_losses),
            prior_losses=list(self.prior_losses),
            lr_effective=self.cfg.lr_effective, lr_rule=self.cfg.lr_rule, steps=self.step,
            eval_loss_before=before, eval_loss_after=after,
            token_ids={w.placeholder: list(w.token_ids) for w in self.words}, config=asdict(self.cfg),
            notes={"progressive_counts": "optimizer steps",
                   "reg_form": self.cfg.reg_form if self.cfg.reg_weight else "none",
                   "authors_tokens": dict(self.authors_tokens),
                   **({"leaves_out": self.learner.leaves_out} if self.learner and self.learner.leaves_out else {})},
            dvar=self.dvar_record(), curve=self.final_curve(after),
            learner={"name": self.cfg.learner, "state": self.learner.state(), "moved": self.learner_moved()}
            if self.learner and self.learner.own_state else {})

    def log_curve(self, parts: Parts) -> None:
        """The fixed-batch loss at this step, when it is one of the curve's (the last step's is
        the run's eval_loss_after, computed once at the end)."""
        if self.step % curve_every(self.cfg.steps) == 0 and not self.done:
            self.curve.append([self.step, _eval(parts, self)])

    def final_curve(self, after: float) -> list[list]:
        """The curve with the run's last step (eval_loss_after) at its end."""
        curve = [list(p) for p in self.curve]
        if not curve or curve[-1][0] != self.step:
            curve.append([self.step, after])
        return curve

    def dvar_record(self) -> dict:
        cfg = self.cfg
        if cfg.stop != "dvar":
            return {}
        return {"window": cfg.dvar_window, "threshold": cfg.dvar_threshold, "batch": cfg.dvar_batch,
                "max_steps": cfg.steps, "stopped_at": self.stopped_at,
                "steps_saved": 0 if self.stopped_at is None else cfg.steps - self.stopped_at,
                "ratio": dvar.variance_ratio(self.dvar_losses, cfg.dvar_window),
                "losses": list(self.dvar_losses)}


@torch.no_grad()
def fixed_batch_losses(parts, batches: list[tuple[object, torch.Tensor]], n_pairs: int = dvar.BATCH,
                       seed: int = dvar.SEED) -> list[float]:
    """L_det of several sets in one UNet call: for each (latent cache, prompt ids [1, L]),
    the diffusion loss on its own fixed pairs. The pairs depend only on the seed, so a set's
    value depends on which sets share the call only through float error (the kernels are
    not batch invariant: `_track_dvar` calls it per set unless asked for one batch)."""
    sched = training_scheduler(parts)
    zs, ts, noises, conds = [], [], [], []
    for latents, ids in batches:
        z, t, noise = _fixed_pairs(parts, sched, latents, n_pairs, seed)
        zs.append(z), ts.append(t), noises.append(noise)
        conds.append(conditioning.encode(parts, ids.to(parts.device)).expand(n_pairs))
    losses = objective.loss(parts, sched, torch.cat(zs), torch.cat(ts), torch.cat(noises),
                            conditioning.cat(conds), groups=[n_pairs] * len(batches))
    return [v.item() for v in losses]


def _fixed_pairs(parts, sched, latents: LatentCache, n_pairs: int, seed: int):
    """The fixed (image, t, eps) pairs: unflipped posterior means in turn, t and eps from `seed`."""
    g = torch.Generator().manual_seed(seed)
    z = latents.mean[torch.arange(n_pairs) % len(latents), 0].to(parts.device)
    t, noise = objective.draw(sched, z.shape, g, parts.device)
    return z, t, noise


def eval_prompt(cfg: InversionConfig) -> str:
    return templates_for(cfg.templates, cfg.style_noun)[0][0].format(cfg.subject)


@torch.no_grad()
def fixed_eval_loss(parts: Parts, latents: LatentCache, prompt_ids: torch.Tensor,
                    n_pairs: int = 16, seed: int = 0) -> float:
    """Diffusion loss on a fixed set of (image, timestep, noise) pairs: comparable across steps.

    Uses the posterior mean of unflipped images and one prompt (token ids [1, L])."""
    sched = training_scheduler(parts)
    z, t, noise = _fixed_pairs(parts, sched, latents, n_pairs, seed)
    cond = conditioning.encode(parts, prompt_ids.to(parts.device)).expand(n_pairs)
    return objective.loss(parts, sched, z, t, noise, cond).item()


def _eval(parts: Parts, s: _Set) -> float:
    ids = parts.tokenize([expand_prompt(eval_prompt(s.cfg), s.words)], expand=False)
    return fixed_eval_loss(parts, s.latents, ids)


def invert(parts: Parts, images: ConceptImages | str | Path, cfg: InversionConfig,
           ckpt_dir: str | Path | None = None, progress: bool = True,
           stop_at: int | None = None, class_images: ConceptImages | None = None) -> InversionResult:
    """Learn `cfg.placeholder` from the images; leaves it in the tokenizer and text encoder.

    class_images: prior preservation's class images (else tinv.engine.prior makes them)."""
    return invert_packed(parts, [(images, cfg)], ckpt_dir, progress, stop_at, [class_images])[0]


def invert_packed(parts: Parts, jobs: list[tuple[ConceptImages | str | Path, InversionConfig]],
                  ckpt_dir: str | Path | None = None, progress: bool = True,
                  stop_at: int | None = None, class_images: list | None = None,
                  one_batch: bool = False) -> list[InversionResult]:
    """Train independent pseudo-word sets together through one frozen model.

    stop_at: stop after this optimizer step (writing a checkpoint), as a preempted job would.
    class_images: per set, its prior preservation's class images or None.
    one_batch: every set's micro-batch in one UNet call (faster; results equal to each set's
    lone run up to float error) instead of one call per set (bit-identical to a lone run)."""
    parts.freeze()
    _check_pack(jobs)
    classes = class_images or [None] * len(jobs)
    sets = [_Set(parts, _as_images(img, cfg, parts), cfg, cls) for (img, cfg), cls in zip(jobs, classes)]
    words = [w for s in sets for w in s.words]
    ckpt_path = checkpoint.inversion_file(ckpt_dir) if ckpt_dir else None
    sched = training_scheduler(parts)
    with learning(parts, words):
        for s in sets:
            s.make_optimizer()
        before = [_eval(parts, s) for s in sets]
        if ckpt_path and ckpt_path.exists():
            _resume(sets, ckpt_path)
        for s, b in zip(sets, before):
            if not s.curve and s.step == 0:
                s.curve.append([0, b])
        total = max(s.cfg.steps for s in sets)
        end = total if stop_at is None else min(stop_at, total)
        start = max(s.step for s in sets)   # sets run in lockstep; a shorter one just stops
        bar = progress_bar(range(start, end), initial=start, total=total,
                   disable=not progress, desc=f"invert {', '.join(s.cfg.placeholder for s in sets)}")
        for step in bar:
            live = [s for s in sets if not s.done]
            if not live:        # every set stopped early (DVAR)
                break
            _optimizer_step(parts, sched, live, one_batch)
            _track_dvar(parts, [s for s in live if s.cfg.stop == "dvar"], one_batch)
            for s in live:
                s.log_curve(parts)
            bar.set_postfix(loss=f"{sets[0].losses[-1]:.4f}" if sets[0].losses else "-", refresh=False)
            every = sets[0].cfg.checkpoint_every
            if ckpt_path and every and (step + 1) % every == 0:
                _save(sets, ckpt_path)
        if ckpt_path and (all(s.done for s in sets) or stop_at is not None):
            _save(sets, ckpt_path)   # a finished job re-run with the same folder returns at once
        after = [_eval(parts, s) for s in sets]
    for s in sets:
        if s.learner:
            s.learner.finish(parts)
    return [s.result(b, a) for s, b, a in zip(sets, before, after)]


def _optimizer_step(parts: Parts, sched: DDPMScheduler, sets: list[_Set], one_batch: bool = False) -> None:
    """One optimizer step for every set: grad_accum micro-batches each. Each set's micro-batch
    goes through the text encoder and UNet in its own batch shape, as when it trains alone, so
    a packed set's result is bit-identical to its lone run (CPU and GPU kernels are not batch
    invariant: the same 4 samples in a batch of 40 come out about 1e-6 apart, which Adam grows
    over hundreds of steps). `one_batch`: every set's micro-batch in ONE call instead, faster
    (docs/speed.md) but equal to the lone run only up to that float error."""
    for s in sets:
        s.optimizer.zero_grad(set_to_none=True)
    accum = sets[0].cfg.grad_accum
    step_loss = [0.0] * len(sets)
    step_diff = [0.0] * len(sets)
    step_prior = [0.0] * len(sets)
    calls = [list(range(len(sets)))] if one_batch else [[i] for i in range(len(sets))]
    for _ in range(accum):
        for call in calls:
            for i, (loss, diff, prior) in zip(call, _micro_batch(parts, sched, [sets[i] for i in call], accum)):
                step_loss[i] += loss / accum
                step_diff[i] += diff / accum
                step_prior[i] += prior / accum
    for i, s in enumerate(sets):
        s.optimizer.step()
        s.step += 1
        s.losses.append(step_loss[i])
        s.diffusion_losses.append(step_diff[i])
        if s.class_latents is not None:
            s.prior_losses.append(step_prior[i])


def _micro_batch(parts: Parts, sched: DDPMScheduler, sets: list[_Set], accum: int) -> list[tuple[float, float, float]]:
    """One micro-batch of each set through one UNet call; backward; each set's (loss,
    diffusion loss, prior term)."""
    drawn = [s.draw(parts) for s in sets]
    z = torch.cat([d[0] for d in drawn])
    prompts = [p for d in drawn for p in d[1]]
    # t and eps from each set's own generator, so packing changes nothing
    pairs = [objective.draw(sched, d[0].shape, s.gen, parts.device) for s, d in zip(sets, drawn)]
    t, noise = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    cond = conditioning.encode(parts, parts.tokenize(prompts, expand=False))
    masks = [d[2] for d in drawn]
    mask = None if all(m is None for m in masks) else torch.cat(
        [m if m is not None else torch.ones(len(d[0]), 1, *d[0].shape[-2:]) for m, d in zip(masks, drawn)])
    weights = [s.learner.weight(d[2]) if s.learner else None for s, d in zip(sets, drawn)]
    weight = None if all(w is None for w in weights) else torch.cat(
        [w.to(z.device) if w is not None else torch.ones(len(d[0]), device=z.device) for w, d in zip(weights, drawn)])
    diffs = objective.loss(parts, sched, z, t, noise, cond, weight=weight, mask=mask,
                           groups=[s.cfg.batch_size for s in sets])
    losses, out = 0.0, []
    for s, diff in zip(sets, diffs):
        loss, prior = diff + s.regularizer(), 0.0
        kept = s.prior_loss(parts, sched)
        if kept is not None:
            loss, prior = loss + kept, kept.item()
        extra = s.learner.extra_loss(parts, sched) if s.learner else None
        if extra is not None:
            loss = loss + extra
        losses = losses + loss / accum
        out.append((loss.item(), diff.item(), prior))
    losses.backward()
    return out


def _track_dvar(parts: Parts, sets: list[_Set], one_batch: bool = False) -> None:
    """After each optimizer step: every DVAR set's fixed-batch loss, in one UNet call per set
    (`one_batch`: one call for all: faster, but a set's stop step may then depend on its pack)."""
    if not sets:
        return
    batches = [s.fixed_batch(parts) for s in sets]
    n_pairs = {s.cfg.dvar_batch for s in sets}
    if one_batch and len(n_pairs) == 1:
        losses = fixed_batch_losses(parts, batches, n_pairs.pop())
    else:
        losses = [fixed_batch_losses(parts, [b], s.cfg.dvar_batch)[0] for s, b in zip(sets, batches)]
    for s, loss in zip(sets, losses):
        s.track(loss)


def _as_images(images, cfg: InversionConfig, parts: Parts) -> ConceptImages:
    if isinstance(images, ConceptImages):
        return images
    return load_concept_images(images, parts.resolution, cfg.center_crop)


def _check_pack(jobs) -> None:
    if not jobs:
        raise ValueError("invert_packed needs at least one (images, config) pair")
    names = [cfg.placeholder for _, cfg in jobs]
    alone = [cfg.placeholder for _, cfg in jobs if cfg.learner != "word" and not learners.get(cfg.learner).packable]
    if alone and len(jobs) > 1:
        raise ValueError(f"sets {alone} train the shared model or condition per layer: they cannot be packed")
    if len(set(names)) != len(names):
        raise ValueError(f"packed sets need distinct placeholders, got {names}")
    for key in ("grad_accum", "checkpoint_every"):
        vals = {getattr(cfg, key) for _, cfg in jobs}
        if len(vals) > 1:
            raise ValueError(f"packed sets must share {key}, got {sorted(vals)} for {names}")


def _save(sets: list[_Set], path: Path) -> None:
    atomic.save_torch(path, {"format": 1, "sets": [s.state() for s in sets],
                             "rng": checkpoint.global_rng_state()})


def _resume(sets: list[_Set], path: Path) -> None:
    state = checkpoint.load(path)
    saved = [st["placeholder"] for st in state["sets"]]
    if saved != [s.cfg.placeholder for s in sets]:
        raise ValueError(f"checkpoint {str(path)!r} holds sets {saved}, not "
                         f"{[s.cfg.placeholder for s in sets]}; use another checkpoint folder")
    for s, st in zip(sets, state["sets"]):
        s.load_state(st, path)
    checkpoint.set_global_rng_state(state["rng"])
