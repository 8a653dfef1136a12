"""Launching: packed inversions, local workers, SLURM, sweep watching."""
