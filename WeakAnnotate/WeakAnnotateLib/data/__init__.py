"""Layer 4 — datasets of cases for training: the manifest, crops cached per case, the map-style dataset."""
