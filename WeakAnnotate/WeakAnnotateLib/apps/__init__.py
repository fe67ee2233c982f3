"""Layer 9 — workflows over the whole library: the modules' self-tests."""
