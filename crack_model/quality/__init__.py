"""Data quality: per-image profiles, drift against a training reference, Great Expectations validation."""
