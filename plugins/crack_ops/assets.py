"""The workflow's Assets, defined once: the DAGs that emit them and the DAGs that schedule on them import them here."""

from __future__ import annotations

from airflow.sdk import Asset

# Emitted by crack_labeled_pool_watch when labeled/ changed; crack_retraining schedules on it.
LABELED_POOL = Asset(name="crack_labeled_pool", uri="crack://labeled-pool")
# Emitted by crack_retraining when the gate promotes a new champion.
CHAMPION_MODEL = Asset(name="crack_champion_model", uri="crack://champion-model")
# Emitted by crack_nightly_scoring when it finalized the night's batches.
SCORING_RESULTS = Asset(name="crack_scoring_results", uri="crack://scoring-results")
