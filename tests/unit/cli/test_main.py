"""The command line in-process: every command is wired, user mistakes are one line and exit 1."""

from __future__ import annotations

import pytest

from crack_model.cli.main import build_parser, main

COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "synth",
    "score",
    "overlays",
    "export",
    "validate",
    "retrain",
    "gate",
    "registry",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(command, capsys):
    """Each command is registered and prints its usage."""
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    assert f"usage: crack-model {command}" in capsys.readouterr().out


def test_a_missing_input_is_one_line_and_exit_1(tmp_path, capsys):
    """A CrackModelError becomes `crack-model: error: ...` on stderr, no traceback, exit code 1."""
    code = main(["predict", "--model", str(tmp_path / "no-model"), str(tmp_path / "photo.jpg")])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(errors) == 1 and errors[0].startswith("crack-model: error: ")
    assert "photo.jpg does not exist" in errors[0]
    assert main(["predict", "--model", str(tmp_path), "s3://inspections/x.jpg"]) == 1
    assert "s3://inspections/x.jpg: predict reads local files; for objects in a store" in capsys.readouterr().err


def test_a_file_where_a_folder_goes_is_one_line_naming_it(tmp_path, capsys):
    """An OSError from a path on the command line (here --out names a file) is a user error, not a traceback."""
    (tmp_path / "a-file").write_text("x")
    code = main(["synth", "--out", str(tmp_path / "a-file"), "--count", "1", "--size", "32"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(errors) == 1 and errors[0].startswith("crack-model: error: ")
    assert str(tmp_path / "a-file") in errors[0] and "check the paths given" in errors[0]


def test_an_os_error_that_is_not_about_a_path_keeps_its_traceback(monkeypatch):
    """A reset connection is no user mistake: it is not turned into "check the paths given". (A broken pipe is
    the reader going away: test_a_reader_that_goes_away_is_no_traceback.)"""
    import errno

    from crack_model.cli import model_commands

    def reset(args):
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    monkeypatch.setattr(model_commands, "run_synth", reset)
    with pytest.raises(ConnectionResetError):
        main(["synth", "--out", "anywhere"])


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (lambda: __import__("botocore.exceptions").exceptions.ConnectTimeoutError(endpoint_url="http://minio:9000"),
         "the S3 store did not serve the request: Connect timeout on endpoint URL"),  # an OSError too
        (lambda: OSError(28, "No space left on device"), "No space left on device; check the paths given"),
    ],
)  # fmt: skip
def test_a_store_timeout_and_a_full_disk_are_one_line(monkeypatch, capsys, raised, said):
    from crack_model.cli import model_commands

    def failing(args):
        raise raised()

    monkeypatch.setattr(model_commands, "run_synth", failing)
    assert main(["synth", "--out", "anywhere"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"crack-model: error: {said}")


def test_an_s3_store_without_credentials_is_one_line_saying_what_to_check(tmp_path, capsys, monkeypatch):
    """botocore's errors (here: no credentials anywhere) are the store's answer, told in one line."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask, offline
    code = main(["registry", "list", "--store", "s3://inspections"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and errors[-1].startswith("crack-model: error: the S3 store did not serve the request")
    assert "credentials" in errors[-1] and "Traceback" not in "\n".join(errors)


def test_export_without_the_keras_model_says_where_it_should_be(tmp_path, capsys):
    from crack_model.core.model_card import ModelCard

    ModelCard(version="v1").save(tmp_path)
    assert main(["export", "--model", str(tmp_path)]) == 1
    assert f"{tmp_path / 'model.keras'} is missing: export converts the Keras model" in capsys.readouterr().err


def test_shard_and_batch_arguments_are_checked_before_any_work(tmp_path, capsys):
    """A batch URI without incoming/<batch_id> is refused with what to write instead."""
    code = main(["score", "--batch", str(tmp_path / "somewhere"), "--model", str(tmp_path)])
    assert code == 1 and "incoming/<batch_id>" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["train", "--data", "d", "--out", "o", "--anchor-weight", "0.1"], "give --start-from too"),
        (["retrain", "--store", "s", "--fresh", "--anchor-weight", "0.1"], "--fresh does not start from"),
        (["retrain", "--store", "s", "--promote"], "give --gate too"),  # it used to do nothing, in silence
        (["retrain", "--store", "s", "--name", "../x"], "invalid model name '../x'"),
    ],
)
def test_a_retrain_that_cannot_do_what_it_asks_is_refused_before_any_work(argv, named, capsys, monkeypatch):
    from crack_model.cli import retrain_command

    monkeypatch.setattr(retrain_command, "validate_pool", lambda store: pytest.fail("the pool was read"))
    assert main(argv) == 1 and named in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--slice-balance", "2"], "must be from 0 to 1"),
        (["--crack-weight", "-1"], "must be a number above 0"),
        (["--augmented-views", "-1"], "must be 0 or a positive integer"),
        (["--fine-tune-layers", "-3"], "must be 0 or a positive integer"),
    ],
)
@pytest.mark.parametrize("command", [["retrain", "--store", "s"], ["evaluate", "--cv", "2", "--data", "d"]])
def test_recipe_numbers_out_of_range_are_usage_errors(command, flags, said, capsys):
    """Refused when parsed (exit 2), not after the pool is validated and the base downloaded."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*command, *flags])
    assert stopped.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("started_from", "said"),
    [
        ({"version": "V1", "used": True, "anchor_weight": 0.0}, "its head started from champion V1's"),
        ({"version": "V1", "used": False, "reason": "its base differs"}, "trained afresh (V1 could not be a start: "
                                                                         "its base differs)"),
        (None, "trained afresh\n"),
    ],
)  # fmt: skip
def test_retrain_says_where_the_candidate_started(monkeypatch, capsys, started_from, said):
    from crack_model.cli import retrain_command

    monkeypatch.setattr(retrain_command, "validate_pool", lambda store: {"outcome": "passed", "objects": 4,
                                                                          "quarantined": []})  # fmt: skip
    monkeypatch.setattr(retrain_command, "train_and_register", lambda *args, **kwargs: {
        "version": "V2", "model_uri": "store/models/crack/versions/V2", "started_from": started_from})  # fmt: skip
    assert main(["retrain", "--store", "s"]) == 0
    assert said in capsys.readouterr().out


def test_a_count_is_refused_in_the_same_words_by_every_command(capsys):
    """validate kept a copy of non_negative_int of its own: another message for the same mistake, and argparse
    named its private function for a value that is no number ("invalid _count value")."""
    for value in ("-1", "x"):
        said = []
        for argv in (["validate", "--batch", "b", "--min-images-per-class", value],
                     ["retrain", "--store", "s", "--augmented-views", value]):  # fmt: skip
            with pytest.raises(SystemExit) as stopped:
                build_parser().parse_args(argv)
            assert stopped.value.code == 2
            error = capsys.readouterr().err.splitlines()[-1]  # crack-model <command>: error: argument --<flag>: ...
            said.append(error.split(": ", 3)[-1])
        assert said[0] == said[1], said


def test_bad_numbers_are_usage_errors():
    """argparse refuses a non-positive batch size with exit code 2."""
    parser = build_parser()
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["predict", "--model", "m", "--batch-size", "0", "x.jpg"])
    assert stopped.value.code == 2
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["train", "--data", "d", "--out", "o", "--hidden-units", "-1"])
    assert stopped.value.code == 2


def test_augmentation_flags_reach_the_model_config_and_are_checked():
    """--zoom-factor, --brightness-factor, --contrast-factor, --hidden-units and --pooled-layers on train and
    evaluate --cv; a factor of 1 or more is refused."""
    from crack_model.cli.arguments import model_config_from
    from crack_model.core.config import ModelConfig

    parser = build_parser()
    assert model_config_from(parser.parse_args(["train", "--data", "d", "--out", "o"])) == ModelConfig()
    chosen = parser.parse_args(["evaluate", "--cv", "5", "--data", "d", "--zoom-factor", "0", "--brightness-factor",
                                "0.2", "--contrast-factor", "0.3", "--hidden-units", "8",
                                "--pooled-layers", "block_13_expand_relu"])  # fmt: skip
    expected = ModelConfig(zoom_factor=0, brightness_factor=0.2, contrast_factor=0.3, hidden_units=8,
                           pooled_layers=("block_13_expand_relu",))  # fmt: skip
    assert model_config_from(chosen) == expected
    for flag in ("--zoom-factor", "--brightness-factor", "--contrast-factor"):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(["train", "--data", "d", "--out", "o", flag, "1"])
        assert stopped.value.code == 2


@pytest.mark.slow
def test_repeated_cross_validation_prints_each_seed_and_the_images_wrong(tmp_path, synth_data, capsys):
    """evaluate --cv 2 --repeats 2: one pooled row per seed, their sums, and every image wrong in any seed."""
    import json

    code = main(["--quiet", "evaluate", "--cv", "2", "--repeats", "2", "--seed", "3", "--data", str(synth_data),
                 "--weights", "none", "--image-size", "32", "--epochs", "1", "--augmented-views", "0", "--seam-share",
                 "0", "--feature-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "cv")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "cv" / "cv-repeats.json").read_text())
    assert "  seed 3 " in printed and "  seed 4 " in printed
    assert f"all seeds: {result['missed_cracks']} missed cracks and {result['false_alarms']} false alarms" in printed
    assert result["misclassified"], "a one-epoch model on a random base gets some images wrong"
    for entry in result["misclassified"]:
        assert f"wrong with {entry['repeats_wrong']} of 2 seeds: {entry['uri']}" in printed
    assert result["seeds"] == [3, 4]


def test_repeats_without_cv_is_a_one_line_error(tmp_path, capsys):
    code = main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path), "--repeats", "3"])
    assert code == 1
    assert "--repeats repeats a cross-validation: add --cv K" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["evaluate", "--cv", "2", "--data", "d", "--label-smoothing", "5"], "--label-smoothing: must be a fraction"),
        (["evaluate", "--cv", "2", "--data", "d", "--label-smoothing", "1"], "--label-smoothing: must be a fraction"),
        (["train", "--data", "d", "--learning-rate", "nan"], "--learning-rate: must be a number above 0"),
        (["train", "--data", "d", "--learning-rate", "-0.1"], "--learning-rate: must be a number above 0"),
        (["train", "--data", "d", "--seed", "-1"], "--seed: must be from 0 to 4294967295"),
        (["evaluate", "--cv", "2", "--data", "d", "--seed", "4294967296"], "--seed: must be from 0 to 4294967295"),
        (["train", "--data", "d", "--out", "o", "--alpha", "-1"], "--alpha: must be one of 0.35, 0.5, 0.75, 1.0"),
        (["train", "--data", "d", "--out", "o", "--alpha", "0.9"], "(MobileNetV2's widths), got 0.9"),
        # These exited 1, some after loading the model or reading the data; 100000 pixels got the process killed.
        (["train", "--data", "d", "--out", "o", "--image-size", "8"], "--image-size: must be from 32 to 1024 pixels"),
        (["train", "--data", "d", "--out", "o", "--image-size", "100000"], "--image-size: must be from 32 to 1024"),
        (["evaluate", "--cv", "2", "--data", "d", "--image-size", "1025"], "--image-size: must be from 32 to 1024"),
        (["retrain", "--store", "s", "--image-size", "100000"], "--image-size: must be from 32 to 1024 pixels"),
        (["evaluate", "--cv", "1", "--data", "d"], "--cv: must be 2 or more folds, got 1"),
        (["score", "--batch", "b", "--model", "m", "--shard", "3/2"], "--shard: invalid shard 3/2: need 0 <= index"),
        (["score", "--batch", "b", "--model", "m", "--shard=-1/2"], "--shard: invalid shard -1/2: need 0 <= index"),
        # Read as an option of its own, `--shard -1/2` got argparse's "expected one argument".
        (["score", "--batch", "b", "--model", "m", "--shard", "-1/2"], "--shard: invalid shard -1/2: need 0 <= index"),
        (["score", "--batch", "b", "--model", "m", "--shard", "first"], "--shard: invalid shard 'first': use INDEX/"),
        # A tile budget the library would refuse only after loading the model, or one a worker cannot hold.
        (
            ["score", "--batch", "b", "--model", "m", "--max-tiles", "5000"],
            "--max-tiles: the tile budget must be from 64",
        ),
        (["score", "--batch", "b", "--model", "m", "--max-tiles", "0"], "2048 tiles per photo, got 0 (default 512"),
        (["predict", "--model", "m", "p.jpg", "--max-tiles", "63"], "--max-tiles: the tile budget must be from 64"),
        (["validate", "--batch", "s/incoming/b", "--max-tiles", "2049"], "--max-tiles: the tile budget must be from"),
        # int() said "invalid tile_budget value", naming a function of ours and no range.
        (
            ["score", "--batch", "b", "--model", "m", "--max-tiles", "abc"],
            "--max-tiles: the tile budget must be an integer from 64 to 2048 tiles per photo, got 'abc' (default 512",
        ),
        (["predict", "--model", "m", "p.jpg", "--max-tiles", "1e3"], "must be an integer from 64 to 2048 tiles per"),
        (["score", "--batch", "b", "--model", "m", "--max-tiles", "512.0"], "must be an integer from 64 to 2048 tiles"),
    ],
)
def test_numbers_that_cannot_train_are_usage_errors(arguments, said, capsys):
    """Label smoothing 5 trained an anti-model in silence; a NaN learning rate or seed -1 ended in a traceback."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(arguments)
    assert stopped.value.code == 2 and said in capsys.readouterr().err


def test_values_that_start_with_a_dash_and_a_digit_are_values_not_options(capsys):
    """`-1e-3` is a value and `-3.jpg` a photo, while `-q` and the command's options stay options."""
    arguments = build_parser().parse_args(["-q", "predict", "-3.jpg", "--model", "m", "--runtime", "keras"])
    assert arguments.quiet and arguments.paths == ["-3.jpg"] and arguments.runtime == "keras"
    with pytest.raises(SystemExit):  # read as the learning rate, and refused for being negative
        build_parser().parse_args(["train", "--data", "d", "--learning-rate", "-1e-3"])
    assert "--learning-rate: must be a number above 0" in capsys.readouterr().err


def test_the_tile_budget_is_an_option_of_score_and_predict():
    """A drone site's 50 MP photos keep their scale within 2048 tiles; without the option, 512."""
    parser = build_parser()
    assert parser.parse_args(["score", "--batch", "b", "--model", "m", "--max-tiles", "2048"]).max_tiles == 2048
    assert parser.parse_args(["score", "--batch", "b", "--model", "m"]).max_tiles == 512
    assert parser.parse_args(["predict", "--model", "m", "p.jpg", "--max-tiles", "1024"]).max_tiles == 1024


def test_validate_measures_at_the_tile_budget_the_batch_will_be_scored_with(monkeypatch, capsys):
    """validate --max-tiles 2048 profiles at the scale the night validates and scores at; without it, 512."""
    from crack_model.cli import validate_command

    budgets = []

    class Passed:
        passed = True

        def summary(self):
            return "passed"

    def validate_batch(store_uri, batch_id, suite, *, profile_config, **options):
        budgets.append(profile_config.tiles.max_tiles)
        return Passed()

    monkeypatch.setattr(validate_command, "validate_batch", validate_batch)
    assert main(["validate", "--batch", "store/incoming/b1", "--max-tiles", "2048"]) == 0
    assert main(["validate", "--batch", "store/incoming/b1"]) == 0
    assert budgets == [2048, 512]


def test_repeats_past_the_last_seed_are_refused_before_any_training(capsys):
    code = main(["evaluate", "--cv", "2", "--data", "d", "--seed", "4294967295", "--repeats", "2"])
    assert code == 1 and "runs past the last seed, 4294967295" in capsys.readouterr().err


def test_a_reader_that_goes_away_is_no_traceback(tmp_path):
    """`crack-model ... | head -1`: the rest of the output has nowhere to go, and that is no error to report."""
    import subprocess
    import sys

    script = "import sys; from crack_model.cli.main import main; sys.exit(main(sys.argv[1:]))"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "README").write_text("a registry without versions yet")  # not a mistyped store
    process = subprocess.Popen([sys.executable, "-c", script, "registry", "list", "--store", str(tmp_path), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    process.stdout.close()  # the reader is gone before a byte is written
    stderr = process.communicate(timeout=120)[1].decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
    assert process.returncode == 141


def test_a_broken_pipe_that_is_not_the_output_keeps_its_traceback(monkeypatch):
    """Only a reader of the output going away ends quietly: a broken pipe to a socket or a subprocess is a fault."""
    import errno

    from crack_model.cli import model_commands

    def broken(args):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(model_commands, "run_synth", broken)
    with pytest.raises(BrokenPipeError):
        main(["synth", "--out", "anywhere"])


def test_registry_list_of_a_mistyped_store_is_an_error_not_an_empty_registry(tmp_path, capsys):
    """`registry list --store <typo>` said "no versions" and exit 0: a script took the registry for empty."""
    for json_flag in ([], ["--json"]):  # scripts read --json
        assert main(["registry", "list", "--store", str(tmp_path / "no-such-registry"), *json_flag]) == 1
        assert "holds nothing at all: check the store's path or bucket" in capsys.readouterr().err
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "README").write_text("a registry without versions yet")
    assert main(["registry", "list", "--store", str(tmp_path)]) == 0
    assert "no versions of crack" in capsys.readouterr().out


def test_an_empty_cache_variable_is_unset(monkeypatch, tmp_path):
    """`CRACK_MODEL_CACHE=` put the cache (downloaded models, features) in whatever folder a command ran from."""
    from crack_model.core.cache import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CRACK_MODEL_CACHE", "")
    assert cache_root() == tmp_path / ".cache" / "crack-model"
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_sigterm_ends_a_command_through_its_cleanups(tmp_path):
    """`timeout` or `docker stop` killed a retrain outright: its pool copy stayed in /tmp, one per killed run."""
    import signal
    import subprocess
    import sys
    import textwrap

    marker = tmp_path / "cleaned"
    script = textwrap.dedent(f"""
        import sys, time
        from crack_model.cli import main as cli, registry_commands
        def handler(args):
            try:
                print("working", flush=True)
                time.sleep(60)
            finally:
                open({str(marker)!r}, "w").close()
        registry_commands.run_registry_list = handler  # a command that works until it is stopped
        sys.exit(cli.main(["registry", "list", "--store", "x"]))
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "working"
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 143 and marker.exists() and "crack-model: terminated" in stderr


def test_main_gives_a_caller_its_own_sigterm_handler_back(tmp_path, capsys):
    """A test or a notebook calling main() kept main's handler: a later SIGTERM raised inside whatever ran next."""
    import signal

    before = signal.getsignal(signal.SIGTERM)
    main(["registry", "list", "--store", str(tmp_path / "none")])
    assert signal.getsignal(signal.SIGTERM) is before


def test_score_refuses_a_batch_that_failed_validation_until_a_run_released_it(tmp_path, capsys):
    """`score` of a failed batch scored it in silence and wrote _SUCCESS: the nightly stopped seeing it."""
    import json

    from crack_model.core import layout
    from crack_model.core.documents import RunSummary
    from crack_model.core.local_store import LocalStore

    store = LocalStore(tmp_path / "store")
    store.write("incoming/b1/a.jpg", b"x")
    store.write(layout.validation_key("b1", layout.OUTCOME),
                json.dumps({"outcome": "failed", "validated_at": "2026-11-24T02:10:00Z"}).encode())  # fmt: skip
    argv = ["score", "--batch", f"{store.root}/incoming/b1", "--model", str(tmp_path / "no-model")]
    assert main(argv) == 1
    said = capsys.readouterr().err
    assert f"batch b1 failed validation (see {store.root}/validation/b1/report.html)" in said
    assert 'release_batches=["b1"]' in said and "score --release-failed REASON" in said
    assert not store.exists("results/b1/_SUCCESS")
    # Without Airflow, the operator's reason on the command line is the release (logged).
    assert main([*argv, "--release-failed", "  "]) == 1 and "failed validation" in capsys.readouterr().err
    assert main([*argv, "--release-failed", "blank frames are the camera's test shots"]) == 1
    assert "failed validation" not in capsys.readouterr().err  # on to the model: none there

    def run(run_id, finished_at):
        RunSummary(run_id, finished_at, 1, ["b1"], [], [], 0, 0, [], batches_released=["b1"]).write(
            store, layout.run_summary_key(run_id)
        )

    run("manual__2026-11-23", "2026-11-23T02:30:00Z")  # released an earlier validation of the batch
    assert main(argv) == 1 and "failed validation" in capsys.readouterr().err
    run("manual__2026-11-24", "2026-11-24T02:30:00Z")
    assert main(argv) == 1 and "failed validation" not in capsys.readouterr().err  # on to the model: none there


@pytest.mark.parametrize("variable", ["/registry", "", None])
def test_score_resolves_a_model_uri_in_the_registry_variable_else_in_the_batch_store(
    tmp_path, monkeypatch, capsys, variable
):
    """README: `score --model models:/crack@champion` uses $CRACK_MODEL_REGISTRY; score looked in the batch's store."""
    from crack_model.cli import score_commands
    from crack_model.core.errors import CrackModelError

    asked = {}

    def load_scorer(uri, **options):
        asked.update(options)
        raise CrackModelError("stop here")

    monkeypatch.setattr(score_commands, "load_scorer", load_scorer)
    if variable is None:
        monkeypatch.delenv("CRACK_MODEL_REGISTRY", raising=False)
    else:
        monkeypatch.setenv("CRACK_MODEL_REGISTRY", variable)
    (tmp_path / "store" / "incoming" / "b1").mkdir(parents=True)
    assert main(["score", "--batch", f"{tmp_path}/store/incoming/b1", "--model", "models:/crack@champion"]) == 1
    assert asked["registry"] == (variable or f"{tmp_path}/store")


def _score_reporting(monkeypatch, tmp_path, **report):
    """`score` of a batch in tmp_path/store, whose shard run ends with ``report`` (no model loaded, nothing scored)."""
    from crack_model.cli import score_commands
    from crack_model.core.layout import Shard
    from crack_model.serving.batch import ShardReport

    monkeypatch.setattr(score_commands, "load_scorer", lambda uri, **options: None)
    monkeypatch.setattr(score_commands, "score_shard", lambda store_uri, batch_id, scorer, shard, **options:
                        ShardReport(batch_id, shard or Shard(), "v1", 2, 0, 1.0, False, **report))  # fmt: skip
    (tmp_path / "store" / "incoming" / "b1").mkdir(parents=True, exist_ok=True)
    return ["score", "--batch", f"{tmp_path}/store/incoming/b1", "--model", "m", "--shard", "0/2"]


def test_a_shard_whose_batch_cannot_complete_exits_1_saying_why(tmp_path, monkeypatch, capsys):
    """Shards scored with different budgets block the batch for good: that printed a line and exited 0."""
    blocked = ("the shards of batch b1 were scored with different tile budgets (shard-0000-of-0002: 512; "
               "shard-0001-of-0002: 2048): score them with one --max-tiles")  # fmt: skip
    assert main(_score_reporting(monkeypatch, tmp_path, waiting_for=blocked, blocked=True)) == 1
    printed = capsys.readouterr()
    assert "shard-0000-of-0002 of batch b1: scored 2 objects" in printed.out
    said = f"crack-model: error: shard-0000-of-0002 is done, but batch b1 cannot complete: {blocked}"
    assert printed.err.strip() == said
    waiting = "shard-0001-of-0002 of batch b1 (model v1) has not finished"
    assert main(_score_reporting(monkeypatch, tmp_path, waiting_for=waiting)) == 0  # only waits for the other shard
    assert "the batch completes when all 2 shards are done" in capsys.readouterr().out


def test_a_batch_already_complete_within_another_tile_budget_says_both_budgets(tmp_path, monkeypatch, capsys):
    """`score --max-tiles 64` of a batch scored within 2048 said only "already complete": not that 64 was not used."""
    from crack_model.core import layout
    from crack_model.core.documents import BatchSummary
    from crack_model.core.local_store import LocalStore

    argv = _score_reporting(monkeypatch, tmp_path, already_complete=True)
    summary = BatchSummary(
        batch_id="b1", model_version="v1", runtime="keras", threshold=0.5, objects=2, status_counts={"ok": 2},
        label_counts={}, crack_class="Positive", cracks=0, crack_rate=0.0, shards=1, scoring_seconds=1.0,
        throughput_images_per_second=2.0, finished_at="2026-12-07T02:00:00Z", max_tiles=2048,
    )  # fmt: skip
    summary.write(LocalStore(tmp_path / "store"), layout.results_key("b1", layout.SUCCESS))

    assert main([*argv, "--max-tiles", "64"]) == 0
    said = capsys.readouterr().out
    assert "batch b1 is already complete, scored within 2048 tiles per photo, not the 64 asked for: " in said
    assert "(use --force to score it again within 64)" in said
    assert main([*argv, "--max-tiles", "2048"]) == 0
    assert "already complete: " in capsys.readouterr().out  # the budget asked for: nothing more to say


def test_an_image_size_past_1024_is_refused_by_the_data_config_too():
    """The retraining DAG's params and a Python caller reach DataConfig without the CLI's check."""
    from crack_model.core.config import DataConfig

    assert DataConfig(image_size=1024).image_size == 1024
    with pytest.raises(ValueError, match="image size must be from 32 to 1024 pixels, got 100000"):
        DataConfig(image_size=100000)


@pytest.mark.parametrize("flags", [["--classes", "nocrack,crack"], ["--crack-class", "crack"]])
def test_evaluate_of_a_model_refuses_class_names_it_would_ignore(tmp_path, capsys, flags):
    """`evaluate --model M --data D --classes ...` ignored --classes, then asked for --classes: a usage error now,
    before the model is loaded; --cv and train still take them."""
    from crack_model.cli.arguments import data_config_from
    from crack_model.core.config import DataConfig

    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path), *flags])
    said = capsys.readouterr().err
    assert stopped.value.code == 2 and "a model is evaluated with its own class names" in said
    parse = build_parser().parse_args
    assert data_config_from(parse(["train", "--data", "d", "--out", "o"])) == DataConfig()
    chosen = parse(["evaluate", "--cv", "2", "--data", "d", "--classes", "nocrack,crack", "--crack-class", "crack"])
    assert data_config_from(chosen) == DataConfig(class_names=("nocrack", "crack"), crack_class="crack")


def test_an_out_the_file_system_refuses_is_named_as_given(tmp_path, monkeypatch):
    """`predict --out ro/p.csv` said "Permission denied: ro/.p.csv.partial", a file the user never named."""
    import builtins
    import errno

    from crack_model.cli import score_commands

    real_open = builtins.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".partial"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(PermissionError) as failure:
        score_commands.write_csv_file(tmp_path / "ro" / "p.csv", iter([]))
    assert failure.value.filename == str(tmp_path / "ro" / "p.csv")


def test_a_cross_validation_slice_without_cracks_prints_no_recall(capsys):
    """evaluate --cv stopped on a pooled slice of clean photos: its crack recall (and interval) is None, not 0."""
    import numpy as np

    from crack_model.cli.cv_command import print_cv_row
    from crack_model.evaluation.intervals import Outcomes
    from crack_model.training.cross_validation import summarize

    clean = np.zeros(5, dtype=bool)
    print_cv_row("slice site-b", summarize(Outcomes(clean, clean, ~clean), 0.95))
    printed = capsys.readouterr().out
    assert "slice site-b       5 images  crack recall n/a [n/a, n/a]  accuracy 1.0000 [" in printed


def test_validate_workers_out_of_range_is_a_usage_error_naming_the_option(capsys):
    """``validate --workers 0`` exited 1 with "profile workers must be at least 1", not naming --workers, where
    ``score`` and ``overlays`` give a usage error."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["validate", "--batch", "s/incoming/b", "--workers", "0"])
    assert stopped.value.code == 2 and "argument --workers" in capsys.readouterr().err
