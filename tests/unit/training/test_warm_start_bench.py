"""bench.warm_start's table: the sums and the count of candidates that missed more than their champion."""

from __future__ import annotations

from bench.warm_start import markdown


def figures(missed: int, alarms: int) -> dict[str, dict[str, int]]:
    return {"site_b_rest": {"missed_cracks": missed, "false_alarms": alarms},
            "metu_holdout": {"missed_cracks": 0, "false_alarms": 1}}  # fmt: skip


def test_the_table_sums_the_runs_and_counts_the_regressions():
    runs = [
        {"seed": 7, "training_seed": None, "site_b_images": 900,
         "models": {"champion": figures(4, 19), "afresh": figures(10, 8), "anchor 0": figures(3, 7)}},
        {"seed": 8, "training_seed": 43, "site_b_images": 900,
         "models": {"champion": figures(5, 18), "afresh": figures(2, 9), "anchor 0": figures(5, 8)}},
    ]  # fmt: skip
    text = markdown({"site_photos": 100, "crack_weight": 3.0, "splits": runs})
    assert "| 7 (900 site-b) | 4 / 19 | 10 / 8 | 3 / 7 | 0 / 1 | 0 / 1 | 0 / 1 |" in text
    assert "| 8, training seed 43 (900 site-b) |" in text
    assert "| total | 9 / 37 | 12 / 17 | 8 / 15 | 0 / 2 | 0 / 2 | 0 / 2 |" in text
    # afresh missed more than its champion once (10 > 4); as many (5 = 5) is not more
    assert "afresh 1, anchor 0 0." in text
