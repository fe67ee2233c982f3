"""Layer 8 — jobs in their own process: spec files (with the registry), the worker, pseudo-labelling, the
non-blocking handle faces use (TrainingJob)."""
