"""``make demo``: the real DAGs, run with ``dag.test()`` on the embedded defaults.

A local folder is the object store and SQLite is Airflow's database: no servers, no cloud
account. The store is seeded with the shipped real sample (a labeled pool, a holdout, a night
of uploads with a few broken files, and a batch of blank frames), then:

1. ``crack_retraining``: validate the pool, train, gate on the holdout; the first model
   passes the floors and becomes champion;
2. ``crack_nightly_scoring``: validate each new batch, quarantine what is broken, fail the
   blank batch, score the rest with the champion, write results next to the uploads.

Uses the offline ImageNet weights named by $CRACK_MODEL_WEIGHTS when set (the Makefile sets it
when the file is beside the project), else Keras downloads them. The weights are checked before
any Airflow work: a missing file, or ``imagenet`` with neither a Keras cache nor a reachable
download host, fails at once with one line saying how to supply them. A failed task prints its
error, the last lines of its log and the log's path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from crack_model.pipelines.overlays import draw_overlays
from demo.airflow_env import airflow_environment, migrate, run_dag
from demo.seed import seed_store

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
# Where keras.applications.MobileNetV2(weights="imagenet") downloads them from (Keras 3).
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + WEIGHTS_FILE
CONNECT_TIMEOUT_SECONDS = 5
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HOW_TO_SUPPLY = (
    f"set CRACK_MODEL_WEIGHTS=/path/to/{WEIGHTS_FILE} (offline copy), "
    "or CRACK_MODEL_WEIGHTS=imagenet with internet access (Keras downloads them)"
)


class WeightsError(Exception):
    """The ImageNet weights the retraining DAG needs cannot be had: the message says how to supply them."""


def resolve_weights(weights: str) -> tuple[str, str]:
    """The weights the retraining DAG gets, and a line saying what they are; checked in seconds.

    Raises:
        WeightsError: a path that is no HDF5 file, or ``imagenet`` with neither a Keras cache nor a
            download host answering within ``CONNECT_TIMEOUT_SECONDS`` (one line: what, and how to fix it).
    """
    if weights.lower() in ("none", "random"):
        return weights, "random initialisation (no ImageNet weights: the gate will probably reject the model)"
    if weights != "imagenet":
        path = Path(weights).expanduser().absolute()
        if not path.is_file():
            msg = f"ImageNet weights {WEIGHTS_FILE} not found: CRACK_MODEL_WEIGHTS={weights} does not exist; "
            msg += HOW_TO_SUPPLY
            raise WeightsError(msg)
        with open(path, "rb") as handle:
            if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise WeightsError(f"CRACK_MODEL_WEIGHTS={weights} is not an HDF5 (.h5) weights file; {HOW_TO_SUPPLY}")
        return str(path), str(path)
    for folder in keras_caches():
        if (folder / WEIGHTS_FILE).is_file():
            return weights, f"imagenet (Keras cache {folder / WEIGHTS_FILE})"
    problem = _download_problem()
    if problem:
        raise WeightsError(f"ImageNet weights {WEIGHTS_FILE} cannot be downloaded ({problem}); {HOW_TO_SUPPLY}")
    return weights, f"imagenet (Keras downloads {WEIGHTS_FILE})"


def keras_caches() -> list[Path]:
    """Where ``keras.utils.get_file`` looks for the weights before downloading: $KERAS_HOME or ~/.keras, /tmp/.keras."""
    homes = [os.environ.get("KERAS_HOME") or "~/.keras", "/tmp/.keras"]  # /tmp when the home is not writable
    return [Path(home).expanduser() / "models" for home in homes]


def _download_problem() -> str | None:
    """Why the Keras download host cannot be reached (None: it answers), within the timeout even if DNS hangs."""
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(WEIGHTS_URL, method="HEAD")
            with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_SECONDS):
                outcome.append(None)
        except urllib.error.HTTPError as error:
            outcome.append(f"HTTP {error.code} from {WEIGHTS_URL}")
        except (urllib.error.URLError, OSError) as error:
            outcome.append(str(getattr(error, "reason", None) or error))

    # A daemon thread: a resolver stuck past the deadline must not keep the demo from exiting.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_SECONDS + 1)
    return outcome[0] if outcome else f"no answer from {WEIGHTS_URL} within {CONNECT_TIMEOUT_SECONDS} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/demo"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        weights, described = resolve_weights(os.environ.get("CRACK_MODEL_WEIGHTS") or "imagenet")
    except WeightsError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    print(f"weights: {described}", flush=True)
    out = args.out.absolute()
    store = out / "store"
    if out.exists():
        shutil.rmtree(out)
    counts = seed_store(str(store))
    print(f"store {store}: {counts['labeled']} labeled, {counts['holdout']} holdout, {counts['incoming']} uploads")
    environment = airflow_environment(out / "airflow")
    try:
        migrate(environment)
    except RuntimeError as error:  # Airflow's own reason is in the message
        print(f"demo: {error}", file=sys.stderr)
        return 1
    for dag_id, conf in (
        ("crack_retraining", {"store": str(store), "weights": weights, "epochs": args.epochs}),
        ("crack_nightly_scoring", {"store": str(store)}),
    ):
        started = time.perf_counter()
        print(f"\n=== dag.test({dag_id}) ...", flush=True)
        try:
            # No retries: on a local folder nothing is transient, and dag.test() would sleep through each delay.
            result = run_dag(dag_id, conf, environment, retries=0)
        except RuntimeError as error:  # the run never finished (import error, crash): its log says why
            print(f"{dag_id}: {error}", file=sys.stderr)
            return 1
        print(f"{dag_id}: {result['state']} in {time.perf_counter() - started:.0f} s")
        for task, state in sorted(result["tasks"].items()):
            print(f"  {task:<28} {state}")
        if result["state"] != "success":
            report_failures(dag_id, result)
            return 1
    report(store)
    return 0


def report_failures(dag_id: str, result: dict[str, Any]) -> None:
    """Each failed task's error, the last lines of its log, and where the whole log is."""
    failures = result.get("failures") or []
    if not failures:
        print(f"\n{dag_id} failed without a failed task; its log: {result.get('log')}", file=sys.stderr)
    for failure in failures:
        print(f"\n{dag_id}: task {failure['task']} {failure['state']}: {failure['error']}", file=sys.stderr)
        for line in failure["tail"]:
            print(f"  | {line}", file=sys.stderr)
        print(f"  log: {failure['log']}", file=sys.stderr)


def report(store: Path) -> None:
    """Where everything went."""
    aliases = json.loads((store / "models/crack/aliases.json").read_text())
    champion = aliases["aliases"]["champion"]
    version_dir = store / "models/crack/versions" / champion
    gate = json.loads((version_dir / "gate_report.json").read_text())
    summary = json.loads((store / "results/2026-11-24/summary.json").read_text())
    blank = json.loads((store / "validation/blank-frames/outcome.json").read_text())
    print(f"\nDemo done. Champion {champion}: gate decision {gate['decision']}.")
    print(
        f"Night 2026-11-24: {summary['objects']} uploads, {summary['status_counts']}, crack rate "
        f"{summary['crack_rate']:.0%}, {summary['throughput_images_per_second']} img/s ({summary['runtime']})."
    )
    print(f"Batch blank-frames: validation {blank['outcome']}, not scored.")
    # A night stores tile scores and draws no overlay (the ops view draws one when it is first shown);
    # the demo draws the night's now, as `crack-model overlays` does, so the folder below has them.
    drawn = draw_overlays(str(store), "2026-11-24")
    print(f"Heat maps of the night's crack images: {drawn.drawn} drawn (crack-model overlays).")
    for label, path in (
        ("model version folder", version_dir),
        ("gate report", version_dir / "gate_report.html"),
        ("predictions", store / "results/2026-11-24/predictions.csv"),
        ("summary", store / "results/2026-11-24/summary.json"),
        ("crack overlays", store / "results/2026-11-24/overlays"),
        ("validation report", store / "validation/2026-11-24/report.html"),
        ("quarantined uploads", store / "quarantine/2026-11-24"),
        ("failed batch report", store / "validation/blank-frames/report.html"),
        ("run summaries", store / "runs"),
    ):
        print(f"  {label:<22} {path}")
    print("See it in the Airflow UI: make airflow  (then open the 'Crack ops' view)")


if __name__ == "__main__":
    sys.exit(main())
