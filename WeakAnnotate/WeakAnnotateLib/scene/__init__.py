"""Layer 2 — the Slicer core: the runtime (desktop or headless wheels), nodes ⇄ arrays, and the files Slicer's
storage nodes read and write (.mrk.json, .seg.nrrd)."""
