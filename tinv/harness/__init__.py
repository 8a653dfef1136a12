"""The harness: a job from its config (plan, concepts, checks, lock, attempts, rows, logging)."""
