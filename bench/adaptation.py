"""Adapting to a new surface: the METU sample plus N labeled site-b photos, through retraining.

``site-b-pavement`` (1,000 photos of another surface) stands in for a new site. For each N
(25, 50, 100, 200 by default; 0 is the METU-only model), half cracks and half not, the labeled
pool is ``<class>/metu/...`` (the METU sample minus a 15 % METU holdout) plus ``<class>/site-b/...``
(N site photos, picked by near-duplicate groups in a seeded order, nested: the 25 are among
the 50), and ``train`` runs the retraining recipe on it: slice-balanced loss on cached base
features, a threshold that reaches the target crack recall on every big-enough validation slice.
Every model is scored, at its own threshold, on the same images it never saw: the site-b photos
outside the largest N's near-duplicate groups (about 800 with N up to 200) and the METU holdout.
(An odd N gives N - 1 photos: N // 2 per class.)

``--gate N`` then runs the real loop once in a local store: ``crack-model retrain --gate --promote``
on the METU pool alone, gated on the METU holdout (the champion); then with N site photos added under
``labeled/<class>/site-b/`` and the site-b evaluation photos under ``holdout/<class>/site-b/``, gated
against the champion on ``holdout/<class>/{metu,site-b}/`` with the default gate policy.
``--baseline-champion`` makes the METU-only model champion even when its own gate rejects it (as an
operator would set a baseline), so the candidate is always gated against it.

``--cv K`` measures what the site photos cost the old surface on all 2,000 METU patches instead of a
300-patch holdout: K-fold cross-validation (``crack-model evaluate --cv``'s ``cross_validate``) of the
recipe on the whole METU sample plus the ``--cv-site-photos`` site photos, pooled per slice.

Each point costs about a minute with a warm feature cache (the first run computes the base's
features of all 3,000 photos once). Writes ``bench/results/adaptation.json`` and ``adaptation.md``.
Each model's JSON scores also give ``by_margin``: the counts had the patch confirmation kept each of
``MARGINS`` below the validation cracks (what chose ``UNSEEN_SURFACE_MARGIN``).

    .venv/bin/python -m bench.adaptation [--sizes 0 25 50 100 200] [--gate 100] [--cv 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.run import PROJECT, RESULTS, SAMPLE, WEIGHTS

SITE_B = SAMPLE.parent / "site-b-pavement"
METU_SLICE, SITE_SLICE = "metu", "site-b"
MARGINS = (0.0, 0.1, 0.15, 0.2, 0.3)  # confirmation margins scored beside the served one (margin_sweep)


def seeded_groups(images: list[Any], seed: int) -> dict[str, list[list[Any]]]:
    """Near-duplicate groups of each class, in a seeded order of their content."""
    from crack_model.data.labeled import group_near_duplicates

    by_class: dict[str, list[list[Any]]] = defaultdict(list)
    for indices in group_near_duplicates(images):
        members = [images[index] for index in indices]
        by_class[members[0].label].append(members)
    for groups in by_class.values():
        groups.sort(key=lambda group: hashlib.sha256(f"{seed}:{min(m.sha256 for m in group)}".encode()).hexdigest())
    return by_class


def pick_site_photos(groups: dict[str, list[list[Any]]], count: int) -> list[Any]:
    """``count // 2`` photos per class, whole groups first in the seeded order."""
    picked: list[Any] = []
    for class_name in sorted(groups):
        taken: list[Any] = []
        for group in groups[class_name]:
            if len(taken) >= count // 2:
                break
            taken.extend(group[: count // 2 - len(taken)])
        picked.extend(taken)
    return picked


def split_pools(seed: int, largest: int) -> tuple[list[Any], dict[str, list[list[Any]]], dict[str, list[Any]]]:
    """The METU pool, the site-b groups in the seed's order, and the evaluation images (``site_b_rest``: site-b
    outside every near-duplicate group the ``largest`` pick touches; ``metu_holdout``: 15 % of METU)."""
    from crack_model.core.config import DataConfig
    from crack_model.data.labeled import load_labeled, split_images

    config = DataConfig()
    metu = load_labeled(SAMPLE, config)
    metu_split = split_images(metu, DataConfig(validation_fraction=0.0, test_fraction=0.15, seed=seed))
    metu_pool, metu_holdout = with_slice(metu_split.train, METU_SLICE), with_slice(metu_split.test, METU_SLICE)
    site = with_slice(load_labeled(SITE_B, config), SITE_SLICE)
    groups = seeded_groups(site, seed)
    used = {image.sha256 for image in pick_site_photos(groups, largest)}
    # every photo of a near-duplicate group the largest pick touches stays out of the evaluation
    touched: set[str] = set()
    for class_groups in groups.values():
        for group in class_groups:
            if any(member.sha256 in used for member in group):
                touched.update(member.sha256 for member in group)
    evaluation = {"site_b_rest": [image for image in site if image.sha256 not in touched], "metu_holdout": metu_holdout}
    return metu_pool, groups, evaluation


def lay_out(images: list[Any], root: Path, slice_name: str) -> None:
    """Copy images to ``<root>/<class>/<slice>/<name>`` (copies: the stores refuse links)."""
    for image in images:
        target = root / image.label / slice_name / Path(image.uri).name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(image.uri, target)


def with_slice(images: list[Any], slice_name: str) -> list[Any]:
    from dataclasses import replace

    return [replace(image, slice=slice_name) for image in images]


def scores(model_dir: Path, images: list[Any], threshold: float, cache: Path) -> dict[str, Any]:
    """Accuracy and crack recall of a saved model on images, from cached features (same network), labeled as
    scoring labels a patch (each image is taken as one tile): confirmed by its flips in the band when the card asks
    (``threshold_alone``: before)."""
    import keras

    from crack_model.core.config import DataConfig, ModelConfig
    from crack_model.core.model_card import ModelCard
    from crack_model.evaluation.metrics import compute_metrics
    from crack_model.training.features import predict_from_features
    from crack_model.training.patch_confirmation import band_flip_means, confirmed_labels

    card = ModelCard.load(model_dir)
    data_config = DataConfig(image_size=card.image_size)
    classes, crack_class = data_config.class_names, data_config.crack_class
    classifier = keras.models.load_model(model_dir / "model.keras", compile=False)
    probabilities = predict_from_features(classifier, images, data_config, ModelConfig(weights=WEIGHTS), cache)
    means = band_flip_means(classifier, images, probabilities[:, data_config.crack_index], threshold, data_config,
                            patches=[True] * len(images))  # fmt: skip
    predicted = confirmed_labels(probabilities, means, threshold, card.patch_confirm_threshold,
                                 classes, crack_class)  # fmt: skip
    labels = [image.label for image in images]
    served = compute_metrics(labels, probabilities, threshold=threshold, class_names=classes, crack_class=crack_class,
                             predicted=predicted)  # fmt: skip
    alone = compute_metrics(labels, probabilities, threshold=threshold, class_names=classes, crack_class=crack_class)
    keys = ("accuracy", "crack_recall", "missed_cracks", "false_alarms")
    return {"images": served["images"], **{key: served[key] for key in keys},
            "threshold_alone": {key: alone[key] for key in keys},
            "by_margin": margin_sweep(model_dir, probabilities, means, labels, threshold)}  # fmt: skip


def margin_sweep(
    model_dir: Path, probabilities: Any, means: Any, labels: list[str], threshold: float
) -> dict[str, Any]:
    """Missed cracks and false alarms had the confirmation kept each margin in ``MARGINS`` below the validation
    cracks (``UNSEEN_SURFACE_MARGIN``; training/patch_confirmation.py): what chose the served one."""
    from crack_model.core.config import DataConfig
    from crack_model.evaluation.metrics import compute_metrics
    from crack_model.training.patch_confirmation import confirm_threshold_below, confirmed_labels

    config = DataConfig()
    chosen = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8")).get("patch_confirmation", {})
    lowest = chosen.get("lowest_crack_mean")
    sweep = {}
    for margin in MARGINS:
        confirm = confirm_threshold_below(threshold, lowest, margin)
        predicted = confirmed_labels(probabilities, means, threshold, confirm, config.class_names, config.crack_class)
        figures = compute_metrics(labels, probabilities, threshold=threshold, class_names=config.class_names,
                                  crack_class=config.crack_class, predicted=predicted)  # fmt: skip
        sweep[f"{margin:g}"] = {"confirm_threshold": round(confirm, 4), "missed_cracks": figures["missed_cracks"],
                                "false_alarms": figures["false_alarms"]}  # fmt: skip
    return sweep


def seam_of(seam_share: float | None) -> float:
    """The seam share asked for, or the default recipe's."""
    from crack_model.core.config import TrainConfig

    return TrainConfig().seam_share if seam_share is None else seam_share


def model_config(zoom_factor: float | None) -> Any:
    """The default recipe's model, zoomed as asked (``--zoom-factor``; None: the default's zoom)."""
    from crack_model.core.config import ModelConfig

    config = ModelConfig(weights=WEIGHTS)
    return config if zoom_factor is None else replace(config, zoom_factor=zoom_factor)


def curve_point(count: int, metu_pool: list[Any], site_pool: list[Any], evaluation: dict[str, list[Any]],
                work: Path, cache: Path, views: int, epochs: int, balance: float,
                fine_tune_layers: int = 0, crack_weight: float = 1.0,
                seam_share: float | None = None, zoom_factor: float | None = None,
                start_from: Path | None = None, anchor_weight: float | None = None,
                training_seed: int | None = None, image_size: int = 224) -> dict[str, Any]:  # fmt: skip
    """Train on the METU pool plus ``site_pool`` (from ``start_from``'s head if given) and score it.

    ``training_seed``: DataConfig.seed of the training run (its train/validation split and random streams).
    """
    from crack_model.core.config import DataConfig, TrainConfig
    from crack_model.training.train import train

    pool = work / f"pool-{count}"
    shutil.rmtree(pool, ignore_errors=True)
    lay_out(metu_pool, pool, METU_SLICE)
    lay_out(site_pool, pool, SITE_SLICE)
    started = time.perf_counter()
    recipe = TrainConfig(epochs=epochs, slice_balance=balance, fine_tune_layers=fine_tune_layers,
                         crack_weight=crack_weight, seam_share=seam_of(seam_share))  # fmt: skip
    if anchor_weight is not None:
        recipe = replace(recipe, anchor_weight=anchor_weight)
    data = DataConfig(image_size=image_size)
    if training_seed is not None:
        data = replace(data, seed=training_seed)
    run = train(pool, work / f"model-{count}", data, model_config(zoom_factor), recipe, verbose=0,
                export_runtimes=False, photo_mosaics=None,  # patch figures only: the photo step costs minutes
                feature_cache_dir=cache, augmented_views=views, start_from=start_from)  # fmt: skip
    seconds = time.perf_counter() - started
    point: dict[str, Any] = {"site_photos": len(site_pool), "threshold": round(run.card.threshold, 4),
                             "train_seconds": round(seconds, 1)}  # fmt: skip
    point["slice_thresholds"] = run.metrics.get("slice_thresholds", {})
    for name, images in evaluation.items():
        point[name] = scores(run.output_dir, images, run.card.threshold, cache)
    return point


def gate_run(count: int, metu_pool: list[Any], site_pool: list[Any], evaluation: dict[str, list[Any]], work: Path,
             epochs: int, views: int, balance: float, fine_tune_layers: int = 0,
             crack_weight: float = 1.0, dag: bool = False,
             seam_share: float | None = None, zoom_factor: float | None = None,
             baseline_champion: bool = False, fresh: bool = False,
             image_size: int = 224) -> dict[str, Any]:  # fmt: skip
    """The real loop: champion from METU alone, then the candidate with site photos (fine-tuned if asked), gated.

    With ``dag``, each step is a run of the crack_retraining DAG; else ``crack-model retrain`` (the same steps).
    With ``baseline_champion``, a METU-only model its own gate rejected is made champion all the same (an
    operator's baseline), so that the candidate is gated against a champion, as bar 2 describes. The candidate
    starts from the champion's head, as retraining does by default; ``fresh`` trains it afresh (the runs
    before 2026-12-06).
    """
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    # The champion was gated on the old site alone; the new site's holdout arrives with its photos.
    lay_out(evaluation["metu_holdout"], store / "holdout", METU_SLICE)
    lay_out(metu_pool, store / "labeled", METU_SLICE)
    command = [sys.executable, "-m", "crack_model", "retrain", "--store", str(store), "--weights", WEIGHTS,
               "--epochs", str(epochs), "--augmented-views", str(views), "--slice-balance", str(balance),
               "--crack-weight", str(crack_weight), "--seam-share", str(seam_of(seam_share)),
               "--zoom-factor", str(model_config(zoom_factor).zoom_factor), "--image-size", str(image_size),
               "--gate", "--promote"]  # fmt: skip
    steps: dict[str, Any] = {}
    environment = None
    if dag:  # the crack_retraining DAG itself, dag.test() on an embedded Airflow (SQLite)
        from demo.airflow_env import airflow_environment, migrate

        environment = airflow_environment(work / "airflow")
        migrate(environment)
    for step in ("champion", "candidate"):
        extra = []
        if step == "candidate":
            lay_out(site_pool, store / "labeled", SITE_SLICE)
            lay_out(evaluation["site_b_rest"], store / "holdout", SITE_SLICE)
            extra = ["--fine-tune-layers", str(fine_tune_layers), *(["--fresh"] if fresh else [])]
        started = time.perf_counter()
        if environment is not None:
            steps[step] = dag_step(store, environment, epochs, views, balance, crack_weight,
                                   fine_tune_layers if step == "candidate" else 0, seam_of(seam_share),
                                   model_config(zoom_factor).zoom_factor, fresh=fresh,
                                   image_size=image_size)  # fmt: skip
            steps[step]["seconds"] = round(time.perf_counter() - started, 1)
        else:
            done = subprocess.run([*command, *extra], capture_output=True, text=True, check=False)
            steps[step] = {"exit_code": done.returncode, "seconds": round(time.perf_counter() - started, 1),
                           "output": done.stdout.strip().splitlines()[-6:]}  # fmt: skip
            print(f"{step}: exit {done.returncode}\n{done.stdout}{done.stderr[-2000:] if done.returncode > 3 else ''}")
        if step == "champion" and baseline_champion:
            steps[step]["baseline_promoted"] = promote_baseline(store)
        report = latest_gate_report(store)
        steps[step]["gate"] = {
            key: (report or {}).get(key) for key in ("decision", "failed_checks", "champion_version")
        }
        print(f"{step}: {steps[step]}")
    report = latest_gate_report(store)
    if report:
        steps["candidate_report"] = {
            "decision": report.get("decision"), "failed_checks": report.get("failed_checks"),
            "slices": {name: {"images": value["images"], **value["metrics"]}
                       for name, value in (report.get("slices") or {}).items()},
            "photo_level": photo_summary(report.get("photo_level")),
            "overall": {side: {key: ((report.get(side) or {}).get("metrics") or {}).get(key)
                               for key in ("missed_cracks", "false_alarms", "crack_recall", "accuracy")}
                        for side in ("candidate", "champion")},
            "champion_photo_level": photo_summary({"candidate": (report.get("photo_level") or {}).get("champion")}),
            "approved_runtimes": report.get("approved_runtimes"),
            "started_from": started_from(store, report.get("candidate_version")),
        }  # fmt: skip
    return {"site_photos": count, "candidate_start": "afresh" if fresh else "from the champion", **steps}


def started_from(store: Path, version: str | None) -> Any:
    """Where the candidate's head started, as its registered version records it (what was asked may not be)."""
    from crack_model.registry.versions import Registry

    return Registry(store).read_version("crack", version).get("started_from") if version else None


def promote_baseline(store: Path) -> str | None:
    """Make the first registered version champion if none is (its gate rejected it); the version, or None."""
    from crack_model.registry.versions import Registry

    registry = Registry(store)
    if registry.aliases("crack").get("champion") is not None:
        return None
    version = registry.version_names("crack")[0]
    registry.promote("crack", version, expected_current=None, actor="bench.adaptation",
                     reason="baseline: --baseline-champion promotes the METU-only model its gate rejected")  # fmt: skip
    return version


def latest_gate_report(store: Path) -> dict[str, Any] | None:
    """The gate report written last in the store's registry: the step just run."""
    reports = sorted((store / "models").rglob("gate_report.json"), key=lambda path: path.stat().st_mtime)
    return json.loads(reports[-1].read_text()) if reports else None


def photo_summary(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """The candidate's figures on the gate's holdout mosaics (what its photo floors judged)."""
    figures = (section or {}).get("candidate")
    if not figures:
        return section
    keep = ("runtime", "tiles_per_mosaic", "clean_mosaics", "false_alarms", "crack_mosaics", "found",
            "crack_patches", "crack_patches_in_marked_tiles", "meets_bar")  # fmt: skip
    return {key: figures[key] for key in keep} | {"rule": figures["rule"]["for_these_photos"]}


def dag_step(store: Path, environment: dict[str, str], epochs: int, views: int, balance: float,
             crack_weight: float, fine_tune_layers: int, seam_share: float,
             zoom_factor: float, fresh: bool = False, image_size: int = 224) -> dict[str, Any]:  # fmt: skip
    """One crack_retraining DAG run on the store; its state and task states (``fresh``: not from the champion)."""
    from demo.airflow_env import run_dag

    conf = {"store": str(store), "weights": WEIGHTS, "epochs": epochs, "augmented_views": views,
            "slice_balance": balance, "crack_weight": crack_weight, "fine_tune_layers": fine_tune_layers,
            "seam_share": seam_share, "zoom_factor": zoom_factor, "promote": True,
            "start_from_champion": not fresh, "image_size": image_size}  # fmt: skip
    result = run_dag("crack_retraining", conf, environment, retries=0)
    return {"exit_code": 0 if result["state"] == "success" else 1, "state": result["state"], "tasks": result["tasks"],
            "failures": [failure.get("tail") for failure in result.get("failures", [])]}  # fmt: skip


def cross_validation(folds: int, metu: list[Any], site_pool: list[Any], work: Path, cache: Path, views: int,
                     epochs: int, balance: float, crack_weight: float,
                     fine_tune_layers: int = 0, seam_share: float | None = None,
                     zoom_factor: float | None = None, image_size: int = 224) -> dict[str, Any]:  # fmt: skip
    """Pooled per-slice figures of K-fold cross-validation on all METU patches plus the site photos."""
    from crack_model.core.config import DataConfig, TrainConfig
    from crack_model.training.cross_validation import cross_validate

    pool = work / "cv-pool"
    shutil.rmtree(pool, ignore_errors=True)
    lay_out(metu, pool, METU_SLICE)
    lay_out(site_pool, pool, SITE_SLICE)
    result = cross_validate(pool, work / "cv", DataConfig(image_size=image_size), model_config(zoom_factor),
                            TrainConfig(epochs=epochs, slice_balance=balance, crack_weight=crack_weight,
                                        fine_tune_layers=fine_tune_layers, seam_share=seam_of(seam_share)),
                            folds=folds, feature_cache_dir=cache, augmented_views=views)  # fmt: skip
    keep = ("images", "cracks", "missed_cracks", "false_alarms", "metrics", "exact_intervals")
    slices = result["pooled_per_slice"]
    return {"folds": folds, "site_photos": len(site_pool),
            "slices": {name: {key: figures[key] for key in keep} for name, figures in slices.items()},
            "thresholds": [fold["threshold"] for fold in result["folds"]]}  # fmt: skip


def step_outcome(step: dict[str, Any]) -> str:
    """A gate step as it ended: a DAG run's state (a rejection is a successful run), or retrain's exit code."""
    gate = step.get("gate") or {}
    decision = f", gate {gate['decision']} {gate.get('failed_checks') or ''}".rstrip() if gate.get("decision") else ""
    if step.get("baseline_promoted"):
        decision += ", made champion all the same (--baseline-champion)"
    if "state" in step:
        return f"DAG run {step['state']}{decision}"
    return f"exit {step['exit_code']} (0 = promoted){decision}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"METU sample ({results['metu_pool']} in the pool, {results['metu_holdout']} held out) plus N site-b photos "
        f"(half cracks); scored on {results['site_b_rest']} site-b photos and the METU holdout, none trained on. "
        f"{results['epochs']} epochs max, {results['views']} augmented views, "
        f"slice balance {results['slice_balance']}, crack weight {results.get('crack_weight', 1.0)}, "
        f"fine-tuned base layers {results.get('fine_tune_layers', 0)}, "
        f"seam share {results.get('seam_share', 0.0)}, zoom factor {results.get('zoom_factor', 0.0)}, "
        f"input {results.get('image_size', 224)} px.",
    ]
    if results["curve"]:
        lines += [
            "",
            "| site-b photos in training | threshold | site-b accuracy | site-b crack recall "
            "| METU holdout accuracy | METU holdout crack recall | train seconds |",
            "|---|---|---|---|---|---|---|",
        ]
    for point in results["curve"]:
        site, metu = point["site_b_rest"], point["metu_holdout"]
        lines.append(
            f"| {point['site_photos']} | {point['threshold']:.3f} | {site['accuracy']:.4f} "
            f"| {site['crack_recall']:.4f} | {metu['accuracy']:.4f} | {metu['crack_recall']:.4f} "
            f"| {point['train_seconds']} |"
        )
    gate = results.get("gate")
    if gate:
        report = gate.get("candidate_report", {})
        lines += [
            "",
            f"Gate run with {gate['site_photos']} site photos (candidate fine-tuned base layers: "
            f"{results.get('fine_tune_layers', 0)}; trained {gate.get('candidate_start', 'afresh')}): "
            f"champion step {step_outcome(gate['champion'])}, "
            f"candidate step {step_outcome(gate['candidate'])}, decision {report.get('decision')}, "
            f"failed checks {report.get('failed_checks')}.",
        ]
        for name, figures in sorted((report.get("slices") or {}).items()):
            lines.append(f"- holdout slice {name}: {figures}")
        if report.get("photo_level"):
            lines.append(f"- holdout mosaics (photo floors): {report['photo_level']}")
    cv = results.get("cv")
    if cv:
        lines += [
            "",
            f"{cv['folds']}-fold cross-validation on all {results['metu_pool'] + results['metu_holdout']} METU patches "
            f"plus {cv['site_photos']} site photos, pooled per slice (thresholds {cv['thresholds']}):",
            "",
            "| slice | images | crack recall [95 % exact] | accuracy [95 % exact] | missed cracks | false alarms |",
            "|---|---|---|---|---|---|",
        ]
        for name, figures in cv["slices"].items():
            recall, accuracy = figures["exact_intervals"]["crack_recall"], figures["exact_intervals"]["accuracy"]
            lines.append(
                f"| {name} | {figures['images']} | {figures['metrics']['crack_recall']:.4f} "
                f"[{recall[0]:.4f}, {recall[1]:.4f}] | {figures['metrics']['accuracy']:.4f} "
                f"[{accuracy[0]:.4f}, {accuracy[1]:.4f}] | {figures['missed_cracks']} | {figures['false_alarms']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from crack_model.core.cache import cache_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[0, 25, 50, 100, 200])
    parser.add_argument("--gate", type=int, default=0, help="also run retrain --gate with this many site photos")
    parser.add_argument("--views", type=int, default=2, help="augmented views cached per image (default: 2)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--slice-balance", type=float, default=1.0, help="TrainConfig.slice_balance (default: 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--crack-weight", type=float, default=1.0, help="TrainConfig.crack_weight (default: 1)")
    parser.add_argument("--fine-tune-layers", type=int, default=0, help="fine-tune the top N base layers (slow)")
    parser.add_argument("--seam-share", type=float, help="TrainConfig.seam_share (default: the default recipe's)")
    parser.add_argument("--zoom-factor", type=float, help="ModelConfig.zoom_factor (default: 0.3)")
    parser.add_argument("--image-size", type=int, default=224, help="input size in pixels (default: 224)")
    parser.add_argument("--dag", action="store_true", help="run the gate steps as crack_retraining DAG runs")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="with --gate: train the candidate afresh, not from the champion (runs before 2026-12-06)",
    )
    parser.add_argument("--baseline-champion", action="store_true",
                        help="with --gate: make the METU-only model champion even if its gate rejects it")  # fmt: skip
    parser.add_argument("--cv", type=int, default=0, help="K-fold cross-validation on all METU plus site photos")
    parser.add_argument("--cv-site-photos", type=int, default=100, help="site photos in the --cv pool (default: 100)")
    parser.add_argument("--lay-out", type=Path, metavar="DIR",
                        help="only write DIR/pool (METU pool plus the largest --sizes site photos), DIR/site-b-rest "
                             "and DIR/metu-holdout as labeled folders, for commands outside this bench")  # fmt: skip
    parser.add_argument("--name", help="results file name in bench/results/ (default: adaptation)")
    parser.add_argument("--work", type=Path, default=PROJECT / "build" / "bench-adaptation")
    parser.add_argument("--cache", type=Path, default=cache_root() / "features")
    args = parser.parse_args(argv)

    largest = max([*args.sizes, args.gate, args.cv_site_photos if args.cv else 0, 0])
    metu_pool, groups, evaluation = split_pools(args.seed, largest)
    metu_holdout = evaluation["metu_holdout"]
    if args.lay_out:
        if args.lay_out.exists() and any(args.lay_out.iterdir()):
            parser.error(f"--lay-out {args.lay_out} is not empty: pick a new folder (old images would stay in it)")
        lay_out(metu_pool, args.lay_out / "pool", METU_SLICE)
        lay_out(pick_site_photos(groups, max(args.sizes, default=0)), args.lay_out / "pool", SITE_SLICE)
        lay_out(evaluation["site_b_rest"], args.lay_out / "site-b-rest", SITE_SLICE)
        lay_out(metu_holdout, args.lay_out / "metu-holdout", METU_SLICE)
        print(f"wrote {args.lay_out}/pool, site-b-rest ({len(evaluation['site_b_rest'])}), "
              f"metu-holdout ({len(metu_holdout)})")  # fmt: skip
        return 0
    results: dict[str, Any] = {
        "metu_pool": len(metu_pool), "metu_holdout": len(metu_holdout), "site_b_rest": len(evaluation["site_b_rest"]),
        "views": args.views, "epochs": args.epochs, "seed": args.seed, "slice_balance": args.slice_balance,
        "fine_tune_layers": args.fine_tune_layers, "crack_weight": args.crack_weight,
        "seam_share": seam_of(args.seam_share),
        "zoom_factor": model_config(args.zoom_factor).zoom_factor,
        "image_size": args.image_size,
        "curve": [],
    }  # fmt: skip
    for count in args.sizes:
        point = curve_point(count, metu_pool, pick_site_photos(groups, count), evaluation, args.work, args.cache,
                            args.views, args.epochs, args.slice_balance, args.fine_tune_layers,
                            args.crack_weight, args.seam_share, args.zoom_factor,
                            image_size=args.image_size)  # fmt: skip
        print(json.dumps(point))
        results["curve"].append(point)
    if args.gate:
        results["gate"] = gate_run(args.gate, metu_pool, pick_site_photos(groups, args.gate), evaluation, args.work,
                                   args.epochs, args.views, args.slice_balance, args.fine_tune_layers,
                                   args.crack_weight, args.dag, args.seam_share, args.zoom_factor,
                                   args.baseline_champion, args.fresh, args.image_size)  # fmt: skip
    if args.cv:
        site_pool = pick_site_photos(groups, args.cv_site_photos)
        results["cv"] = cross_validation(args.cv, metu_pool + metu_holdout, site_pool, args.work, args.cache,
                                         args.views, args.epochs, args.slice_balance, args.crack_weight,
                                         args.fine_tune_layers, args.seam_share, args.zoom_factor,
                                         args.image_size)  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or "adaptation"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
