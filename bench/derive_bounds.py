"""Derive the validation thresholds for brightness, contrast and blur from real photos.

Method (``crack_model.quality.thresholds.derive_thresholds``): profile every image of a labeled
folder (default: the real METU sample, 2,000 227x227 concrete patches), take the 0.1st and
99.9th percentiles of each statistic over both classes, then widen them: brightness (a
bounded 0..255 scale) by 15 % of the spread between the two percentiles on each side;
contrast and blur (positive and long-tailed) by dividing the low end and multiplying the
high end by 1.5. The script prints the percentiles, the derived bounds next to the defaults
in ``ValidationThresholds``, and how many of the images fall outside (it must be none), and
can save a drift reference profile of the same images.

    .venv/bin/python bench/derive_bounds.py [--data FOLDER] [--reference OUT.json]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "metu-sample"
STATISTICS = ("brightness", "contrast", "blur", "saturated_fraction", "dark_fraction")


def derive(data: Path) -> tuple[Any, Any]:
    """Profile the labeled folder and derive thresholds: (profile, thresholds)."""
    from crack_model.quality.profile import profile_labeled
    from crack_model.quality.thresholds import derive_thresholds

    profile = profile_labeled(str(data), prefix="")
    return profile, derive_thresholds(profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labeled folder (<data>/<class>/*.jpg)")
    parser.add_argument("--reference", help="also save a drift reference profile of these images here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.data.is_dir():
        print(f"no data folder {args.data}: pass --data", file=sys.stderr)
        return 1

    from crack_model.quality import drift
    from crack_model.quality.thresholds import ValidationThresholds

    profile, derived = derive(args.data)
    defaults = ValidationThresholds()
    decodable = profile[profile["decodable"]]
    print(f"{len(decodable)} decodable of {len(profile)} images in {args.data}")
    print(f"{'statistic':<20}{'min':>10}{'p0.1':>10}{'p99.9':>10}{'max':>10}")
    for name in STATISTICS:
        values = decodable[name]
        row = (values.min(), values.quantile(0.001), values.quantile(0.999), values.max())
        print(f"{name:<20}" + "".join(f"{value:>10.4g}" for value in row))
    print(f"\n{'threshold':<20}{'derived':>10}{'default':>10}")
    outside = 0
    for name in ("brightness", "contrast", "blur"):
        low, high = getattr(derived, f"{name}_min"), getattr(derived, f"{name}_max")
        for suffix, value in (("min", low), ("max", high)):
            print(f"{name + '_' + suffix:<20}{value:>10.4g}{getattr(defaults, f'{name}_{suffix}'):>10.4g}")
        outside += int(((decodable[name] < low) | (decodable[name] > high)).sum())
    print(f"\nimages outside the derived bounds: {outside}")
    if args.reference:
        drift.save_reference(drift.build_reference(profile, source=str(args.data)), args.reference)
        print(f"drift reference written to {args.reference}")
    return 0 if outside == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
