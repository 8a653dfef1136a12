"""Suite-wide settings: offline, no W&B network, nothing written to the home folder."""
import os
import tempfile

import pytest

# Set before any test imports huggingface_hub or wandb: nothing here may reach a hub.
_tmp = tempfile.mkdtemp(prefix="tinv-tests-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", os.path.join(_tmp, "hf"))
os.environ.setdefault("WANDB_MODE", "offline")
for _k, _sub in [("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "wandb-cache"),
                 ("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_DATA_DIR", "wandb-data")]:
    os.environ.setdefault(_k, os.path.join(_tmp, _sub))
os.environ.setdefault("WANDB_SILENT", "true")

# Tiny models are dominated by per-op overhead: one thread per process is faster than two
# fighting, and the cluster tests run several job processes side by side anyway.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)


# The suite runs on every core (pyproject: -n auto --dist loadgroup). A file's tests stay
# in one worker, so its module fixtures are built once; the files that submit to the test
# SLURM share one worker, so its few slots never hold two files' sweeps at once.
SLURM_FILES = ("test_slurm_failures.py", "test_slurm_sweeps.py")


@pytest.hookimpl(tryfirst=True)     # before xdist reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        group = "slurm" if name in SLURM_FILES else str(item.path.relative_to(config.rootpath))
        item.add_marker(pytest.mark.xdist_group(group))
