"""suite.json as markdown: one table per part, blanks where a part gave nothing."""
from __future__ import annotations


def _f(v, fmt: str = ".4g", unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:{fmt}}{unit}"
    return str(v)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
            + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(s: dict) -> str:
    m = s["machine"]
    where = m["gpu"] or f"CPU only ({m['cpus_available']} CPUs)"
    lines = [f"# tinv GPU suite{' (--quick)' if s['quick'] else ''}: {where}", "",
             f"`{s['command']}`, started {s['started']}, wall {_f(s['wall_s'], '.0f', ' s')} "
             f"(budget {s['budget_s']:.0f} s), host {m['host']}, Python {m['python']}, "
             f"torch {m['versions'].get('torch')}, load average {_f(m['load_avg_start'], '.2f')} at the start "
             f"and {_f(m.get('load_avg_end'), '.2f')} at the end.", ""]
    lines += _table(["part", "status", "wall s", "limit s", "reason"],
                    [[p, s[p]["status"], _f(s[p]["wall_s"], ".1f"), _f(s[p]["timeout_s"], ".0f"),
                      s[p]["reason"] or ""] for p in s["parts"]])

    b, t = s["bench"], s["targets"]
    lines += ["", f"## Speed: tinv vs diffusers (`python -m tinv.tools.bench --compile`; {_f(b['model'])} on "
              f"{_f(b['device'])}, {_f(b['dtype'])})", ""]
    lines += _table(
        ["what", "diffusers", "tinv", "speed-up", "target", "goal", "meets target"],
        [[f"inversion s/concept-step, {_f(b['packed_concepts'])} concepts packed", _f(b["baseline_s_per_step"]),
          _f(b["tinv_packed_s_per_concept_step"]), _f(b["ratio_packed"], ".2f", "x"), ">= 6x", "8x",
          _f(t["inversion_packed"]["meets_target"])],
         [f"inversion s/step, batch {_f(b['batch_size'])}, one concept", _f(b["baseline_s_per_step"]),
          _f(b["tinv_s_per_concept_step"]), _f(b["ratio_single"], ".2f", "x"), ">= 1.5x", "2x",
          _f(t["inversion_batch4"]["meets_target"])],
         [f"sampling {_f(b['samples'])} images x {_f(b['sample_steps'])} DDIM steps, s",
          _f(b["baseline_sampling_s"]), _f(b["tinv_sampling_s"]), _f(b["ratio_sampling"], ".2f", "x"),
          ">= 1.5x", "2x", _f(t["sampling_64"]["meets_target"])]])
    pl = t["physical_limit"]
    lines += ["", f"torch.compile of the UNet ({_f(b['compile_backend'])}): {_f(b['compile_s'], '.1f', ' s')}. "
              f"Physical limit {pl['limit_s_per_concept_step']} s/concept-step (bf16 peak, H200): "
              f"limit / measured = {_f(pl['limit_over_measured'], '.2f')}."
              + (f" Targets not judged: {t['reason']}." if t["reason"] else "")]

    lines += ["", f"DVAR early stopping (N={_f(b['dvar_window'])}, against {_f(b['dvar_budget'])} steps) on "
              f"{_f(b['dvar_concepts'])} toy concepts at the model's resolution: {_f(b['dvar_mean_steps'], '.1f')} "
              f"steps on average, {_f(b['dvar_steps_saved'], '.1f')} saved ({_f(b['dvar_fewer_x'], '.1f', 'x')} "
              f"fewer), {_f(b['dvar_wall_s'], '.1f', ' s')}; per concept: {_f(b['dvar_steps'])}."]

    h = s["harness"]
    lines += ["", f"## One harness job ({_f(h['model'])} on {_f(h['device'])}, {_f(h['dtype'])}, "
              f"{_f(h['resolution'])} px; {_f(h['prompts'])} prompts + reconstruction x "
              f"{_f(h['samples_per_prompt'])} samples, DDIM {_f(h['sample_steps'])}; "
              f"{_f(h['inversion_steps'])} inversion steps at batch {_f(h['inversion_batch_size'])}; "
              f"evaluator {_f(h['evaluator'])})", ""]
    lines += _table(["invert s", "s/step", "sample s", "evaluate s", "total s", "peak GiB", "peak reserved GiB"],
                    [[_f(h["invert_s"], ".1f"), _f(h["invert_s_per_step"]), _f(h["sample_s"], ".1f"),
                      _f(h["evaluate_s"], ".1f"), _f(h["total_s"], ".1f"), _f(h["peak_mem_gib"], ".2f"),
                      _f(h["peak_mem_reserved_gib"], ".2f")]])
    lines += ["", f"Peak memory: {_f(h['peak_mem_kind'])}."]

    sc = s["successors"]
    steps, ratio = sc.get("s_per_step") or {}, sc.get("ratio_to_word") or {}
    lines += ["", f"## The successors: one inversion step each ({_f(sc['model'])} on {_f(sc['device'])}, "
              f"{_f(sc['dtype'])}, batch {_f(sc['batch_size'])}, mean of {_f(sc['timed_steps'])} steps)", ""]
    lines += _table(["learner", "s/step", "x the single word's", "error"],
                    [[k, _f(steps.get(k)), _f(ratio.get(k), ".2f", "x"), (sc.get("errors") or {}).get(k, "")]
                     for k in (sc.get("learners") or [])])
    d = s["dryrun"]
    lines += ["", f"## Dry runs: {_f(d['model'])} at {_f(d['resolution'])} px on {_f(d['device'])}, "
              f"{_f(d['steps'])} steps (`python -m tinv.tools.dryrun`)", ""]
    lines += _table(["method", "s/step", "peak GiB", "export + load", "error"],
                    [[m, _f((d.get("s_per_step") or {}).get(m)), _f((d.get("peak_mem_gib") or {}).get(m), ".2f"),
                      {True: "ok", False: "FAILED"}.get((d.get("export_ok") or {}).get(m), "-"),
                      (d.get("errors") or {}).get(m, "")] for m in (d.get("methods") or [])]
                    + [[m, "-", "-", "-", f"skipped: {why}"] for m, why in (d.get("skipped") or {}).items()])
    lines += ["", f"Peak memory: {_f(d['peak_mem_kind'])}."]
    p, q = s["pretrain"], s["quickstart"]
    lines += ["", f"## Toy world on {_f(p['device'] or q['device'])}", ""]
    lines += _table(["pretraining (joint UNet + text)", "batch", "steps/s", "samples/s"],
                    [["recipe batch", _f(p["recipe_batch"]), _f(p["recipe_steps_per_s"], ".1f"),
                      _f(p["recipe_steps_per_s"] * p["recipe_batch"] if p["recipe_steps_per_s"] else None, ".0f")],
                     ["large batch", _f(p["large_batch"]), _f(p["large_batch_steps_per_s"], ".1f"),
                      _f(p["large_batch_samples_per_s"], ".0f")]])
    lines += ["", f"{_f(p['recipe_steps'], ',')} steps at the recipe batch: "
              f"{_f(p['recipe_projected_min'], '.1f', ' min')} "
              f"(peak {_f(p['peak_mem_gib'], '.2f', ' GiB')}, {_f(p['peak_mem_kind'])}).",
              "", f"Quickstart grid (`{_f(q['command'])}`): {_f(q['rows_ok'])} of {_f(q['jobs'])} rows ok, "
              f"{_f(q['rows_failed'])} failed; wall {_f(q['grid_wall_s'], '.0f', ' s')}"
              + ("" if q["complete"] else f", projected {_f(q['projected_wall_s'], '.0f', ' s')}") + "."]

    pr = s["profile"]
    lines += ["", f"## Profile: packed inversion step ({_f(pr['packed_concepts'])} concepts x batch "
              f"{_f(pr['batch_size'])}, {_f(pr['model'])} on {_f(pr['device'])}; "
              f"{_f(pr['s_per_step'])} s/step, {_f(pr['s_per_concept_step'])} s/concept-step, "
              f"{_f(pr['busy_s_per_step'])} s/step busy on the {'GPU' if pr['device'] == 'cuda' else 'CPU'}; "
              f"sorted by {_f(pr['sort_by'])})", ""]
    lines += _table(["operator", "ms/step", "share", "calls/step"],
                    [[f"`{o['name']}`", _f(o["self_ms_per_step"], ".2f"), _f(o["share"] * 100, ".1f", "%"),
                      _f(o["calls_per_step"], ".0f")] for o in pr["top_ops"] or []] or [["-", "-", "-", "-"]])
    return "\n".join(lines) + "\n"
