"""bench.mosaics: what its results page says about the false alarms over several seeds."""

from __future__ import annotations


def test_the_page_names_the_patch_under_most_false_alarms_over_the_seeds():
    from bench.mosaics import culprits

    runs = [
        {"runtime": "litert-int8", "false_alarms": 2, "missed_crack_patches": [],
         "false_alarm_patches": {"/data/Negative/03462.jpg": 2, "/data/Negative/05073.jpg": 1}},
        {"runtime": "litert-int8", "false_alarms": 1, "missed_crack_patches": ["/data/Positive/00001_1.jpg"],
         "false_alarm_patches": {"/data/Negative/03462.jpg": 1}},
        {"runtime": "keras", "false_alarms": 0, "missed_crack_patches": [], "false_alarm_patches": {}},
        {"runtime": "litert-fp32", "false_alarms": 0},  # results written before the figures named patches
    ]  # fmt: skip
    assert culprits(runs) == [
        "",
        "litert-int8: clean patches under the false alarms' highest tiles: `Negative/03462.jpg` 3 of 3, "
        "`Negative/05073.jpg` 1 of 3; crack patches of missed crack photos: `Positive/00001_1.jpg`.",
    ]
    assert culprits(runs[2:]) == []  # nothing to name: no line at all


def test_the_totals_show_what_the_confirmation_removed_over_the_seeds():
    from bench.mosaics import totals

    def run(false_alarms: int, unconfirmed: int, confirm: float | None = 0.48) -> dict:
        return {"runtime": "litert-int8", "clean_mosaics": 40, "crack_mosaics": 40, "false_alarms": false_alarms,
                "found": 40, "crack_patches": 80, "crack_patches_in_marked_tiles": 78, "meets_bar": false_alarms <= 1,
                "seconds": 10.0, "tiles_per_mosaic": 154, "rule": {"confirm_threshold": confirm},
                "without_confirmation": {"false_alarms": unconfirmed, "found": 40}}  # fmt: skip

    lines = totals([run(1, 3), run(2, 4)])
    assert lines[0] == "| litert-int8 | all 2 | | | not confirmed | 7 of 80 | 80 of 80 | | | |"
    assert lines[1].startswith(
        "| litert-int8 | all 2 | | | photo rule | 3 of 80 | 80 of 80 | 156 of 160 | 1 of 2 seeds"
    )
    assert len(totals([run(1, 1, confirm=None), run(2, 2)])) == 1  # a run without a confirmation: no such line
