"""Fixtures the integration tier shares with the unit tests, defined beside the unit tests that use them most."""

from tests.unit.evaluation.test_gate import detector, holdout  # noqa: F401
from tests.unit.quality.test_validation import real_files  # noqa: F401
from tests.unit.serving.test_batch import model_dir  # noqa: F401
