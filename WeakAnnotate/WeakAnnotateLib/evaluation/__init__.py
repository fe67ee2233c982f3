"""Layer 3 — measuring: metrics, annotations simulated from reference masks, overlays, self-test samples."""
