"""Layer 7 — one package per method (algorithm, node glue, training method, command, descriptor) and the
registry that lists them (methods/registry.py)."""
