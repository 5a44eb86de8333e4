"""torch modules of the small model."""
