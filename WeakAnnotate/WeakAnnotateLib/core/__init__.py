"""Layer 0 — what everything shares, numpy only: errors, voxel grids (Geometry), the Box type, atomic files, colours."""
