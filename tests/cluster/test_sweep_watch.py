"""tinv.launch.sweep_watch and the launchers' refusals, without a SLURM: stand-in submitit jobs
that finish, fail or are cancelled; the settings checks on the real launcher presets."""
from __future__ import annotations

import shlex
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from tinv.launch import cluster, sweep_watch
from tinv.launch.sweep_watch import CANCELLED, FAILED, OK

CONF_DIR = str(cluster.REPO_ROOT / "conf")
# what submitit raises for a task that wrote no result (messages as seen on the test SLURM)
KILLED = "Job 7_0 (task: 0) with path /x/7_0_0_result.pkl\nhas not produced any output (state: FAILED)"
SCANCELLED = "Job 7_1 (task: 0) with path /x/7_1_0_result.pkl\nhas not produced any output (state: CANCELLED by 0)"


@pytest.fixture(autouse=True)
def no_sacct(monkeypatch):
    """The stand-in jobs exist on no cluster: no sacct query for their exit codes."""
    monkeypatch.setattr(sweep_watch, "_sacct_exit_code", lambda job: None)


def job_return(row: dict | None = None, error: Exception | None = None) -> JobReturn:
    ret = JobReturn()
    ret.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    ret._return_value = error if error else row
    return ret


class FakeSlurmJob:
    """A submitted SLURM task: `results()` returns its JobReturns or raises what submitit raises."""

    def __init__(self, job_id: str, outcome, stderr_file):
        self.job_id, self.outcome = job_id, outcome
        self.paths = SimpleNamespace(stderr=stderr_file)

    def results(self):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return [self.outcome]

    def done(self):
        return True


def fake_submitter(tmp_path, plan):
    """plan[attempt][unit] -> what that unit's task ends with; records each submission."""
    calls = []
    stderr = tmp_path / "task.err"
    stderr.write_text("invert <S*>: 10%| 2/20\r\nslurmstepd-vm: error: *** STEP 9.0 ON vm FAILED ***\n")

    def submit(units):
        attempt = len(calls)
        calls.append(list(units))
        return [FakeSlurmJob(f"{10 + attempt}_{k}", plan[attempt][u], stderr) for k, u in enumerate(units)]
    return submit, calls


OVERRIDES = [["eval=fast", "concept=red_star", "method=single_word"],
             ["eval=fast", "concept=red_star", "method=two_word"],
             ["eval=fast", "concept=blue_heart", "method=single_word"]]


def test_every_task_is_waited_for_and_each_job_gets_its_outcome(tmp_path):
    ok = job_return({"status": "ok", "folder": "/runs/x/blue_heart-single_word-abc"})
    submit, calls = fake_submitter(tmp_path, [{0: RuntimeError(KILLED), 1: RuntimeError(SCANCELLED), 2: ok}])
    out = sweep_watch.watch(submit, [[0], [1], [2]], OVERRIDES, initial_job_idx=0, retries=0)
    assert [o.status for o in out] == [FAILED, CANCELLED, OK] and calls == [[0, 1, 2]]
    assert "killed" in out[0].reason and "SLURM state FAILED" in out[0].reason and "\r" not in out[0].reason
    assert out[2].folder.endswith("blue_heart-single_word-abc") and out[2].value is ok
    text = sweep_watch.summary(out, sweep_watch.resubmit_commands(out, ["hydra/launcher=slurm"]))
    lines = text.splitlines()
    assert lines[0] == "sweep summary: 3 jobs: 1 ok, 1 failed, 1 cancelled"
    assert lines[1].split()[:4] == ["failed", "#0", "concept=red_star", "method=single_word"]
    assert "(task 10_0)" in lines[1] and lines[2].split()[:2] == ["cancelled", "#1"]
    # the two jobs differ in one override only: one command reruns both, nothing else
    assert lines[4:] == ["rerun just the failed and cancelled jobs (each resumes from its checkpoint):",
                         "  python run.py -m hydra/launcher=slurm eval=fast concept=red_star "
                         "method=single_word,two_word"]


def test_retries_resubmit_failed_tasks_only(tmp_path):
    ok = job_return({"status": "ok", "folder": "/f"})
    plan = [{0: RuntimeError(KILLED), 1: RuntimeError(SCANCELLED), 2: ok}, {0: ok}]
    submit, calls = fake_submitter(tmp_path, plan)
    out = sweep_watch.watch(submit, [[0], [1], [2]], OVERRIDES, initial_job_idx=4, retries=2)
    assert calls == [[0, 1, 2], [0]]                   # cancelled is not retried; no third round
    assert [(o.idx, o.status, o.attempts) for o in out] == [(4, OK, 2), (5, CANCELLED, 1), (6, OK, 1)]
    assert out[0].task_id == "11_0"
    assert sweep_watch.summary(out, [], retries=2).splitlines()[0] == \
        "sweep summary: 3 jobs: 2 ok, 0 failed, 1 cancelled (1 retried, retries=2)"


def test_a_failing_job_in_a_pack_and_an_exception_reason(tmp_path):
    boom = job_return(error=ValueError("concept folder '/data/cat' is empty"))
    ok = job_return({"status": "ok", "folder": "/f"})

    class Pack(FakeSlurmJob):
        def results(self):
            return [[boom, ok]]                          # PackedJobs returns one JobReturn per job
    submit = lambda units: [Pack("3", None, tmp_path / "none")]  # noqa: E731
    out = sweep_watch.watch(submit, [[0, 1]], OVERRIDES[:2], initial_job_idx=0, retries=0)
    assert [o.status for o in out] == [FAILED, OK]
    assert out[0].reason == "ValueError: concept folder '/data/cat' is empty"


def test_rerun_commands_keep_the_launcher_drop_the_sweep_folder_and_a_presets_sweep():
    outs = [sweep_watch.Outcome(0, ["+experiment=fig10", "concept=red_star", "method=single_word"]),
            sweep_watch.Outcome(1, ["+experiment=fig10", "concept=blue_heart", "method=two_word"])]
    cmds = sweep_watch.resubmit_commands(
        outs, ["hydra/launcher=slurm", "hydra.sweep.dir=/tmp/s", "hydra.mode=MULTIRUN",
               "hydra.launcher.setup=[module load cuda]"], sweeper_params=True)
    assert len(cmds) == 2                                # two overrides differ: no product of them
    args = shlex.split(cmds[0])
    assert args == ["python", "run.py", "-m", "hydra/launcher=slurm", "hydra.launcher.setup=[module load cuda]",
                    "hydra.sweeper.params=null", "+experiment=fig10", "concept=red_star", "method=single_word"]


@pytest.mark.parametrize("preset", ["slurm", "local"])
def test_bad_launcher_settings_are_refused_in_one_line(preset, tmp_path, capsys):
    from hydra.core.plugins import Plugins

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={preset}", f"hydra.sweep.dir={tmp_path}/s"],
                      return_hydra_config=True)
    bad = {"pack": 0, "pack_mode": "threads", "retries": -1, "timeout_min": "soon", "one_batch": "yes"}
    if preset == "slurm":   # the local preset has no dirty-tree guard
        bad["allow_dirty"] = "yes"
    with pytest.raises(SystemExit) as e:
        Plugins.instance()._instantiate(OmegaConf.merge(cfg.hydra.launcher, bad))
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: bad launcher settings: ")
    for key, value in bad.items():
        assert f"hydra.launcher.{key}={value!r}" in err[0]
    with pytest.raises(cluster.LauncherSettingsError, match="unknown key hydra.launcher.partitoin "):
        cluster.check_launcher_settings("slurm", {"partitoin": "gpu"})
    cluster.check_launcher_settings("slurm", {"srun_args": ["--cpu-bind=none"], "partition": "gpu"})
    with pytest.raises(cluster.LauncherSettingsError, match="one_batch=true needs hydra.launcher.pack_mode=batch"):
        cluster.check_launcher_settings("slurm", {}, pack=4, one_batch=True)
    cluster.check_launcher_settings("slurm", {}, pack=4, pack_mode="batch", one_batch=True)
    assert not (tmp_path / "s").exists()
