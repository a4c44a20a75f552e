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
