"""Layer 1 — images on disk (SimpleITK: NIfTI, NRRD, MHA, DICOM) and the data catalogue (cases.json)."""
