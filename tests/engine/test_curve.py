"""The fixed-batch loss curve a run logs (InversionResult.curve): from step 0 (the run's
eval_loss_before) to its end (eval_loss_after) every curve_every(steps) steps, resumed with
the run, and measured without touching what the run computes."""
from __future__ import annotations

from tinv.engine import inversion
from tinv.engine.inversion import InversionConfig, curve_every, invert


def cfg(steps: int, **kw) -> InversionConfig:
    return InversionConfig(initializer_word="cat", batch_size=2, seed=23, steps=steps, **kw)


def test_the_curve_spans_the_run_at_its_interval_and_ends_at_the_final_loss(make_parts, concept):
    res = invert(make_parts("sd"), concept, cfg(12), progress=False)
    assert curve_every(12) == 1 and curve_every(300) == 10 and curve_every(5000) == 167
    assert [s for s, _ in res.curve] == list(range(13))
    assert res.curve[0][1] == res.eval_loss_before and res.curve[-1][1] == res.eval_loss_after
    assert res.curve[-1][1] < res.curve[0][1]          # the loss it logs is the one that falls
    res = invert(make_parts("sd"), concept, cfg(70), progress=False)
    assert [s for s, _ in res.curve] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54,
                                         57, 60, 63, 66, 69, 70]


def test_logging_the_curve_changes_nothing_the_run_computes(make_parts, concept, monkeypatch):
    logged = invert(make_parts("sd"), concept, cfg(8), progress=False)
    monkeypatch.setattr(inversion, "curve_every", lambda steps: 10 ** 9)     # only the ends
    bare = invert(make_parts("sd"), concept, cfg(8), progress=False)
    assert len(logged.curve) == 9 and [s for s, _ in bare.curve] == [0, 8]
    assert logged.losses == bare.losses and logged.eval_loss_after == bare.eval_loss_after


def test_a_resumed_run_logs_the_curve_the_straight_run_logs(make_parts, concept, tmp_path):
    whole = invert(make_parts("sd"), concept, cfg(9, checkpoint_every=3), progress=False)
    invert(make_parts("sd"), concept, cfg(9, checkpoint_every=3), ckpt_dir=tmp_path, progress=False, stop_at=6)
    resumed = invert(make_parts("sd"), concept, cfg(9, checkpoint_every=3), ckpt_dir=tmp_path, progress=False)
    assert resumed.curve == whole.curve and len(whole.curve) == 10
