"""Layer 6 — the generic training engine: the job spec's common fields, the method base class, the loop,
progress lines and exit codes."""
