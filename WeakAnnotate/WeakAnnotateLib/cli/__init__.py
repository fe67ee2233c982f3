"""Layer 10 — the ``weakannotate`` command."""
