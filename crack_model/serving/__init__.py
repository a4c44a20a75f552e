"""Scoring: runtimes (Keras, LiteRT), the scorer, tiled inference, overlays, batch scoring of a store prefix."""
