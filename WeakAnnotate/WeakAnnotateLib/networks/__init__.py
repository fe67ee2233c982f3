"""Layer 5 — networks rebuilt from a model config, model files, sliding-window prediction."""
