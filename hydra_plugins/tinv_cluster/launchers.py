"""The launchers of `hydra/launcher=slurm|local` (conf/hydra/launcher/).

Hydra only instantiates launcher classes defined under the `hydra_plugins` package, so
they are declared here; what they add to hydra-submitit-launcher's lives in tinv.cluster.
Imported by Hydra's plugin scan in every Hydra process: keep it light (no torch).
"""
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from tinv.cluster import TinvLauncherMixin


class SlurmLauncher(TinvLauncherMixin, submitit_launcher.SlurmLauncher):
    """submitit_slurm plus the dirty-tree guard and packing."""

    guard_dirty_tree = True


class LocalLauncher(TinvLauncherMixin, submitit_launcher.LocalLauncher):
    """submitit_local (processes on this machine) plus packing."""
