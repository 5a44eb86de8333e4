"""Training of the small model with Ray Train: data bundle, per-worker loop, the stage."""
