"""tinv.launch.cluster without a SLURM: the dirty-tree guard, provenance, packing groups, presets."""
import os
import subprocess
import time

import pytest
from hydra import compose, initialize_config_dir

from tinv.launch import cluster
from tinv.launch.cluster import DirtyTreeError, PackedJobs, check_clean_tree, chunks, slurm_provenance

CONF_DIR = str(cluster.REPO_ROOT / "conf")


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A committed one-file checkout."""
    git(tmp_path, "init", "-q")
    (tmp_path / "method.yaml").write_text("lr: 0.005\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_clean_checkout_passes(repo):
    check_clean_tree(folders=[repo])


@pytest.mark.parametrize("change", ["edit", "untracked"])
def test_dirty_checkout_is_refused_naming_the_file_and_the_override(repo, change):
    if change == "edit":
        (repo / "method.yaml").write_text("lr: 0.05\n")
        name = "method.yaml"
    else:
        (repo / "new_method.yaml").write_text("lr: 1\n")
        name = "new_method.yaml"
    with pytest.raises(DirtyTreeError) as e:
        check_clean_tree(folders=[repo])
    assert name in str(e.value) and cluster.ALLOW_DIRTY_OVERRIDE in str(e.value)


def test_allow_dirty_overrides_and_ignored_files_do_not_count(repo):
    (repo / ".gitignore").write_text("runs/\n")
    git(repo, "add", ".gitignore")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore runs")
    (repo / "runs").mkdir()
    (repo / "runs" / "result.json").write_text("{}")
    check_clean_tree(folders=[repo])               # results written by jobs are not drift
    (repo / "method.yaml").write_text("lr: 0.05\n")
    check_clean_tree(allow_dirty=True, folders=[repo])


def test_folder_outside_git_passes(tmp_path):
    check_clean_tree(folders=[tmp_path])


def test_slurm_provenance_array_task_and_attempt():
    env = {"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "55", "SLURM_ARRAY_TASK_ID": "2",
           "SLURM_RESTART_COUNT": "1"}
    assert slurm_provenance(env) == {"slurm_job_id": "55_2", "slurm_attempt": 2}
    assert slurm_provenance({"SLURM_JOB_ID": "9"}) == {"slurm_job_id": "9", "slurm_attempt": 1}
    assert slurm_provenance({}) == {"slurm_job_id": None, "slurm_attempt": None}


def test_chunks_keep_order_and_reject_bad_pack():
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError, match=r"hydra.launcher.pack=0 \(an integer >= 1\)"):
        chunks([1], 0)


@pytest.mark.parametrize("preset", ["slurm", "local"])
def test_launcher_presets_compose_and_instantiate(preset, tmp_path):
    from hydra.core.plugins import Plugins

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={preset}", f"hydra.sweep.dir={tmp_path}"],
                      return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg.pack == 1
    assert launcher_cfg.submitit_folder.endswith("/.submitit/%j")
    if preset == "slurm":
        assert launcher_cfg.allow_dirty is False and launcher_cfg.max_num_timeout >= 1
    # Hydra only instantiates launchers it found in its plugin scan (hydra_plugins/).
    launcher = Plugins.instance()._instantiate(launcher_cfg)
    assert isinstance(launcher, cluster.TinvLauncherMixin)
    assert not {"pack", "pack_mode", "allow_dirty", "retries"} & set(launcher.params)
    assert launcher.pack_mode == "processes" and launcher.retries == 0


def _sleepy_task(name, packed=None):
    start = time.time()
    time.sleep(1.0)
    return name, os.getpid(), start, time.time(), packed


class SleepyJob:
    """Stands in for the launcher: one Hydra job that takes a second, run through the
    launcher's task function (run.py's main), which a batch pack hands the shares."""

    task_function = staticmethod(_sleepy_task)

    def __call__(self, name):
        return self.task_function(name)


def test_packed_jobs_run_side_by_side_each_in_its_own_process():
    pack = PackedJobs(SleepyJob(), [("a",), ("b",), ("c",)])
    out = pack()
    assert [o[0] for o in out] == ["a", "b", "c"]           # results in submission order
    assert len({o[1] for o in out} | {os.getpid()}) == 4    # one fresh process per job
    assert max(o[2] for o in out) < min(o[3] for o in out)  # all three ran at once
    again = pack.checkpoint()                               # what submitit requeues
    assert isinstance(again.function, PackedJobs) and again.function.job_args == pack.job_args


def test_batch_packs_run_in_this_process_in_order_and_requeue_with_their_configs():
    pack = PackedJobs(SleepyJob(), [("a",), ("b",)], tasks=[])   # no configs: nothing to invert
    out = pack()
    assert [o[0] for o in out] == ["a", "b"] and {o[1] for o in out} == {os.getpid()}
    assert out[0][3] <= out[1][2]                                 # one after the other
    assert all(o[4] is not None for o in out)                     # each job got the pack's shares
    again = pack.checkpoint()
    assert again.function.tasks == [] and again.function.job_args == pack.job_args
