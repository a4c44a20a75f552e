"""Foundations every layer uses: errors, configuration, object storage and its key layout, images and tiles, the model card."""
