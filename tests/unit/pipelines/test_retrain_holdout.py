"""validate_pool checks the labeled pool against the holdout the gate will read, not only <store>/holdout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from crack_model.pipelines.retraining import PoolValidationError, validate_pool
from tests.imagefiles import encode


def photo(seed: int) -> bytes:
    """A soft mid-grey texture within the training suite's default bounds."""
    noise = np.random.default_rng(seed).normal(150, 30, (96, 96)).clip(0, 255).astype(np.uint8)
    return encode(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)).convert("RGB"), quality=92)


def test_a_training_photo_in_the_gates_own_holdout_fails_the_pool_before_training(tmp_path):
    """With the DAG's holdout param, the pool was checked against <store>/holdout only: the overlap was found by
    the gate, after a training, and the candidate stayed registered."""
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    for label, seeds in (("Negative", range(0, 20)), ("Positive", range(100, 120))):
        for seed in seeds:
            (store / "labeled" / label).mkdir(parents=True, exist_ok=True)
            (store / "labeled" / label / f"{seed}.jpg").write_bytes(photo(seed))
        (elsewhere / label).mkdir(parents=True)
        (elsewhere / label / "other.jpg").write_bytes(photo(seeds[0] + 500))
    (elsewhere / "Positive" / "site-copy.jpg").write_bytes(photo(100))  # also labeled/Positive/100.jpg
    (store / "holdout" / "Positive").mkdir(parents=True)
    (store / "holdout" / "Positive" / "unrelated.jpg").write_bytes(photo(900))

    with pytest.raises(PoolValidationError, match="not_in_holdout"):
        validate_pool(str(store), holdout=str(elsewhere))
    assert "not_in_holdout" not in " ".join(validate_pool_reasons(str(store)))


def validate_pool_reasons(store: str) -> list[str]:
    """The reasons the pool fails for (none: it passed) when checked against <store>/holdout."""
    try:
        return list(validate_pool(store)["reasons"])
    except PoolValidationError as error:
        return [str(error)]
