"""The GPU suite (issue 14): everything a short GPU lease should measure, in one command.

    bash scripts/device/suite.sh [--quick] [--out DIR]      # = python -m tinv.tools.suite ...

Seven parts, each in its own process with its own timeout, so that one crash, hang or
out-of-memory loses only that part (tinv/tools/suite/parts.py):
  bench       python -m tinv.tools.bench --compile: the three speed ratios and compile time, and
              the steps DVAR early stopping saves per toy concept (at 512 px on the GPU)
  profile     torch.profiler over the packed inversion step: top operators by time
  harness     one job end to end through run.py on the SD-1.5-architecture random
              pipeline saved as a folder: invert/sample/evaluate split, peak memory
  pretrain    toy-world joint UNet + text encoder steps per second (recipe and large batch)
  successors  one inversion step of each successor (P+, NeTI, Custom Diffusion, DreamBooth-LoRA)
              beside the single word's, SD-1.5's architecture at 512 px
  dryrun      python -m tinv.tools.dryrun's dry run of one method per kind of learner on SD 1.5's
              full-size architecture at 512 px: the job through run_job, 2 steps, the export
              loaded into a stock pipeline; s/step and peak memory per method
  quickstart  `python run.py -m +experiment=quickstart`: the whole grid's wall time
The orchestrator (__main__.py) writes suite.json (every key of SECTIONS, always; a part
that failed gives nulls and its reason) and suite.md (report.py). --quick runs the same
parts on CPU with tiny models and few steps, so CI keeps the suite from rotting.
"""
from __future__ import annotations

# Every part's section carries these, whatever happened to the part.
COMMON = ("status", "reason", "wall_s", "timeout_s")

# The keys each part's section holds (values null when the part did not produce them).
SECTIONS: dict[str, tuple[str, ...]] = {
    "bench": ("model", "device", "dtype", "batch_size", "packed_concepts", "inversion_steps",
              "baseline_s_per_step", "tinv_s_per_concept_step", "tinv_packed_s_per_concept_step",
              "samples", "sample_steps", "baseline_sampling_s", "tinv_sampling_s",
              "compile_backend", "compile_s", "ratio_single", "ratio_packed", "ratio_sampling",
              "dvar_concepts", "dvar_budget", "dvar_window", "dvar_steps", "dvar_mean_steps",
              "dvar_steps_saved", "dvar_fewer_x", "dvar_wall_s"),
    "profile": ("model", "device", "dtype", "packed_concepts", "batch_size", "profiled_steps",
                "s_per_step", "s_per_concept_step", "busy_s_per_step", "sort_by", "top_ops"),
    "harness": ("model", "device", "dtype", "resolution", "evaluator", "prompts",
                "samples_per_prompt", "sample_steps", "inversion_steps", "inversion_batch_size",
                "job_status", "invert_s", "sample_s", "evaluate_s", "total_s",
                "invert_s_per_step", "peak_mem_gib", "peak_mem_reserved_gib", "peak_mem_kind"),
    "pretrain": ("device", "dtype", "timed_steps", "recipe_batch", "recipe_steps_per_s",
                 "recipe_steps", "recipe_projected_min", "large_batch", "large_batch_steps_per_s",
                 "large_batch_samples_per_s", "peak_mem_gib", "peak_mem_kind"),
    "successors": ("model", "device", "dtype", "batch_size", "timed_steps", "learners", "s_per_step",
                   "ratio_to_word", "errors"),
    "dryrun": ("model", "device", "resolution", "latent", "steps", "methods", "s_per_step", "peak_mem_gib",
               "peak_mem_kind", "export_ok", "errors", "skipped"),
    "quickstart": ("device", "command", "jobs", "rows_ok", "rows_failed", "complete",
                   "grid_wall_s", "projected_wall_s"),
}
PARTS = tuple(SECTIONS)

# Issue 7's speed targets for the SD-1.5 architecture at 512 px, bf16 (tinv.tools.bench's ratios:
# diffusers time / tinv time). The physical limit: the UNet forward + backward of one
# batch-4 step at bf16 peak on an H200 is about 0.008 s.
TARGETS = {
    "inversion_packed": {"ratio": "ratio_packed", "target": 6.0, "goal": 8.0,
                         "what": "inversion per concept-step, 8 concepts packed, vs the diffusers example"},
    "inversion_batch4": {"ratio": "ratio_single", "target": 1.5, "goal": 2.0,
                         "what": "inversion per step at batch 4, one concept, vs the diffusers example"},
    "sampling_64": {"ratio": "ratio_sampling", "target": 1.5, "goal": 2.0,
                    "what": "64 samples, DDIM 50, vs the stock StableDiffusionPipeline"},
}
PHYSICAL_LIMIT_S_PER_CONCEPT_STEP = 0.008


def run_killable(cmd: list[str], log, timeout: float, **popen) -> int | None:
    """Run `cmd` with its output into `log`, in a process group of its own so that a timeout
    kills its children too; its exit code, or None when it was killed at `timeout` s."""
    import os
    import signal
    import subprocess
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **popen)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
