"""Labeled images: listing, fingerprints, near-duplicate-aware splits, tf.data pipelines, synthetic textures."""
