"""Foundations every layer uses: errors, configuration, storage and its key layout, images, tiles, the model card."""
