"""``crack-model predict|score|overlays``: score image files or a batch of uploads; draw a batch's overlays."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from crack_model.cli.arguments import MAX_TILES_HELP, batch_size, positive_int, shard, tile_budget
from crack_model.core import layout
from crack_model.core.documents import RunSummary, read_outcome, read_success_marker
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore, shown_key
from crack_model.core.storage import open_store
from crack_model.core.tiling import DEFAULT_MAX_TILES
from crack_model.data.image_names import is_image_name
from crack_model.pipelines.alerts import release_advice
from crack_model.pipelines.overlays import draw_overlays
from crack_model.quality.outcome import FAILED
from crack_model.registry.model_uri import REGISTRY_ENV
from crack_model.serving.batch import score_shard
from crack_model.serving.predict import expand_paths, predict_files, prediction_row, write_predictions
from crack_model.serving.scorer import load_scorer

log = module_logger(__name__)


def add_predict_command(commands: Any) -> None:
    predict = commands.add_parser(
        "predict",
        help="score image files or folders, one CSV row per image",
        description="Score images; an unreadable image is a row with status=error.",
    )
    predict.add_argument("paths", nargs="+", help="image files and/or folders")
    predict.add_argument("--model", required=True, help="model folder (local or s3://)")
    predict.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    predict.add_argument("--runtime", default="auto", help="auto, keras, litert-fp32 or litert-int8 (default: auto)")
    predict.add_argument(
        "--batch-size", type=batch_size, help="inference batch size, 1-1024 (default: suits the runtime)"
    )
    predict.add_argument("--max-tiles", type=tile_budget, default=DEFAULT_MAX_TILES, help=MAX_TILES_HELP)
    predict.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files = expand_paths(args.paths)
    if args.out:
        refuse_an_input_as_output(args.out, files, args.model)
    scorer = load_scorer(args.model, runtime=args.runtime)
    scores = tqdm(
        predict_files(scorer, files, batch_size=args.batch_size, max_tiles=args.max_tiles),
        total=len(files),
        unit="img",
        desc="scoring",
        disable=args.quiet,
        file=sys.stderr,
    )
    rows = (prediction_row(score, scorer) for score in scores)
    if args.out:
        count = write_csv_file(args.out, rows)
        print(f"{count} predictions written to {args.out}", file=sys.stderr)
    else:
        write_predictions(rows, sys.stdout)
    return 0


def write_csv_file(out: Path, rows: Any) -> int:
    """The rows into ``out``: a regular file is written beside and renamed, so an interrupted run leaves the earlier
    file, never a partial one; anything else (``/dev/stdout``, a link, a pipe) is written through as it is."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        with open(out, "w", newline="", encoding="utf-8") as handle:
            return write_predictions(rows, handle)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            count = write_predictions(rows, handle)
        partial.replace(out)
    except OSError as error:  # a folder refusing the file beside: name the --out the user gave, not ours
        if error.filename is None or os.fspath(error.filename) != os.fspath(partial):
            raise
        raise OSError(error.errno, error.strerror, str(out)) from None
    finally:
        partial.unlink(missing_ok=True)
    return count


def refuse_an_input_as_output(out: Path, files: list[str], model: str) -> None:
    """``--out photos/a.jpg`` (the file name forgotten) wrote the CSV over a photo: refuse an image name, an input
    or a file the model folder holds."""
    inputs = {os.path.realpath(path) for path in files}
    of_the_model = out.is_file() and out.resolve().parent == Path(model).resolve()
    if is_image_name(out.name) or os.path.realpath(out) in inputs or of_the_model:
        raise CrackModelError(f"--out {out} is an image or a model file (the output's name forgotten?): "
                              "give a new .csv file, e.g. --out predictions.csv")  # fmt: skip


def add_score_command(commands: Any) -> None:
    score = commands.add_parser(
        "score",
        help="score a batch of uploads in object storage and write results next to it",
        description="Score <store>/incoming/<batch_id>/ and write <store>/results/<batch_id>/ "
        "(predictions.csv, summary.json, _SUCCESS last; each image's tile scores in _parts/, from which "
        "`crack-model overlays` or the ops view draw heat maps). Resumes where a killed run stopped.",
    )
    score.add_argument(
        "--batch", required=True, help="<store>/incoming/<batch_id>; store = s3://bucket[/prefix] or a folder"
    )
    score.add_argument("--model", required=True, help="model folder (local or s3://)")
    score.add_argument(
        "--shard", type=shard, default="0/1", help="INDEX/COUNT, 0-based: score only this shard (default: 0/1)"
    )
    score.add_argument("--runtime", default="auto", help="auto (fastest approved), keras, litert-fp32, litert-int8")
    score.add_argument(
        "--batch-size", type=batch_size, help="inference batch size, 1-1024 (default: suits the runtime)"
    )
    score.add_argument(
        "--workers", type=positive_int, help="threads fetching objects (default: 2 from a folder, 8 from S3)"
    )
    score.add_argument(
        "--max-tiles", type=tile_budget, default=DEFAULT_MAX_TILES,
        help=f"{MAX_TILES_HELP}; a shard scored before with another budget is scored again",
    )  # fmt: skip
    score.add_argument("--part-rows", type=positive_int, default=500, help="rows per resumable part (default: 500)")
    drawing = score.add_mutually_exclusive_group()
    drawing.add_argument(
        "--overlays", action="store_true", help="also draw crack heat maps now (slower: on the scoring path)"
    )
    drawing.add_argument(
        "--no-overlays", dest="overlays", action="store_false", help="draw no heat map while scoring (the default)"
    )
    score.add_argument("--force", action="store_true", help="rescore even if the batch already has _SUCCESS")
    score.add_argument(
        "--release-failed", metavar="REASON",
        help="score a batch whose validation failed and no nightly run released, for this REASON (logged; for a "
        "deployment without Airflow: a nightly release is recorded in runs/, this one only in the log)",
    )  # fmt: skip
    score.set_defaults(handler=run_score)
    # Registered with ``score``: it works on what ``score`` leaves, and main.py wires commands by module.
    add_overlays_command(commands)


def run_score(args: argparse.Namespace) -> int:
    store_uri, batch_id = layout.parse_batch_uri(args.batch)
    shard = args.shard
    refuse_an_unreleased_failed_batch(open_store(store_uri), batch_id, args.release_failed)
    # Results go into the store, as a night's do: only a runtime the model is approved for, as the nightly DAG asks.
    # A models:/ URI resolves in $CRACK_MODEL_REGISTRY, as for every command, else in the batch's store (the DAG's).
    registry = os.environ.get(REGISTRY_ENV, "").strip() or store_uri
    scorer = load_scorer(args.model, runtime=args.runtime, registry=registry, approved_only=True)
    report = score_shard(
        store_uri, batch_id, scorer, shard, part_rows=args.part_rows, batch_size=args.batch_size,
        workers=args.workers, overlays=args.overlays, force=args.force, progress=not args.quiet,
        max_tiles=args.max_tiles,
    )  # fmt: skip
    results = open_store(store_uri).url(layout.results_key(batch_id))
    if report.already_complete:
        print(_already_complete(open_store(store_uri), batch_id, results, args.max_tiles))
        return 0
    rate = f", {report.images / report.seconds:.1f} img/s" if report.seconds > 0 and report.images else ""
    print(
        f"{shard.name} of batch {batch_id}: scored {report.images} objects ({report.skipped_already_done} "
        f"already done) in {report.seconds:.1f} s{rate}, model {report.model_version}"
    )
    if report.finalized:
        print(f"batch complete: {results}/{layout.PREDICTIONS}, {layout.SUMMARY}, {layout.SUCCESS}")
    elif report.blocked:  # no other shard will finish it: a failure to act on, not a wait (a script must see it)
        raise CrackModelError(f"{shard.name} is done, but batch {batch_id} cannot complete: {report.waiting_for}")
    else:
        print(f"shard done; the batch completes when all {shard.count} shards are done")
    return 0


def _already_complete(store: ObjectStore, batch_id: str, results: str, max_tiles: int) -> str:
    """What ``score`` says of a batch it left as it was: with the budget it was scored within when that is not the
    one asked for, which this run did not apply (``--force`` does)."""
    marker = read_success_marker(store, batch_id)
    summary = marker.summary if marker else None
    scored_within = (summary.max_tiles or DEFAULT_MAX_TILES) if summary else max_tiles  # unreadable: not known
    if scored_within == max_tiles:
        return f"batch {batch_id} is already complete: {results} (use --force to rescore)"
    return (f"batch {batch_id} is already complete, scored within {scored_within} tiles per photo, not the {max_tiles} "
            f"asked for: {results} (use --force to score it again within {max_tiles})")  # fmt: skip


# Keys named in a one-line report; the rest are counted.
SHOWN_KEYS = 5


def refuse_an_unreleased_failed_batch(store: ObjectStore, batch_id: str, release: str | None = None) -> None:
    """A batch whose validation failed waits for an operator's release: scored by hand, it got a ``_SUCCESS`` that
    took it out of the nightly's view (no more validation, alert or release record). ``release``: the reason an
    operator gave on the command line (``--release-failed``), which is the release."""
    outcome = read_outcome(store, batch_id)
    if outcome is None or outcome.get("outcome") != FAILED:
        return
    if _released(store, batch_id, str(outcome.get("validated_at") or "")):
        return
    report = store.url(layout.validation_key(batch_id, "report.html"))
    if release and release.strip():
        log.warning("scoring batch %s, which failed validation (%s), released on the command line: %s", batch_id,
                    report, release.strip())  # fmt: skip
        return
    raise CrackModelError(f"batch {batch_id} failed validation (see {report}) and no operator released it: it is not "
                          "scored until one does, with the ops view's \"Release this batch\" or: "
                          f"{release_advice(batch_id)} (without Airflow: score --release-failed REASON)")  # fmt: skip


def _released(store: ObjectStore, batch_id: str, validated_at: str) -> bool:
    """Did a nightly run release the batch at or after its latest validation? (Each run's summary lists the batches
    it released; a batch validated again since, and failed again, waits for another release.)"""
    for info in store.list(layout.RUNS + "/"):
        if not info.key.endswith(".json"):
            continue
        try:
            run = RunSummary.read(store, info.key)
        except CrackModelError:  # a damaged summary releases nothing
            continue
        if run is not None and batch_id in run.batches_released and run.finished_at >= validated_at:
            return True
    return False


def add_overlays_command(commands: Any) -> None:
    overlays = commands.add_parser(
        "overlays",
        help="draw the heat-map overlay of every crack image of a scored batch",
        description="Draw results/<batch_id>/overlays/<upload>.png for every row of predictions.csv labeled crack, "
        "from the tile scores scoring kept (overlays already there are kept). The ops view draws them one by one "
        "when first shown; this draws them all, e.g. to copy the folder elsewhere.",
    )
    overlays.add_argument(
        "--batch", required=True, help="<store>/incoming/<batch_id>; store = s3://bucket[/prefix] or a folder"
    )
    overlays.add_argument("--workers", type=positive_int, default=2, help="drawing threads (default: 2)")
    overlays.add_argument("--refresh", action="store_true", help="draw again the overlays already there")
    overlays.set_defaults(handler=run_overlays)


def run_overlays(args: argparse.Namespace) -> int:
    store_uri, batch_id = layout.parse_batch_uri(args.batch)
    report = draw_overlays(store_uri, batch_id, workers=args.workers, refresh=args.refresh)
    folder = open_store(store_uri).url(layout.results_key(batch_id, layout.OVERLAYS))
    print(f"batch {batch_id}: {report.drawn} overlays drawn, {report.kept} already there, in {folder}")
    if report.failed:
        print(f"{report.failed} crack images could not be drawn (see the warnings above)", file=sys.stderr)
    if missing := report.without_tile_scores:
        shown = ", ".join(shown_key(key) for key in missing[:SHOWN_KEYS])
        more = f" and {len(missing) - SHOWN_KEYS} more" if len(missing) > SHOWN_KEYS else ""
        print(f"{len(missing)} crack images have no tile scores to draw from ({shown}{more}): score the batch "
              f"again to keep them: crack-model score --batch {args.batch} --model <model> --force",
              file=sys.stderr)  # fmt: skip
    return 1 if report.failed or missing else 0
