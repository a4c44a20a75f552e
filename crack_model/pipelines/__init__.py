"""The steps the DAGs and the CLI call: nightly scoring, retraining, the ops overview."""
