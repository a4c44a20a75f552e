"""CrackStoreHook and run_store: a store opened with an Airflow connection's session, never with os.environ."""

from __future__ import annotations

import json
import os

import pytest

AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")  # fmt: skip
ENDPOINT = "http://127.0.0.1:9"  # never contacted: building a client does no I/O


@pytest.fixture()
def minio_connection(monkeypatch):
    """An AWS connection defined the way the compose file defines one: AIRFLOW_CONN_<ID> JSON, MinIO endpoint."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    connection = {
        "conn_type": "aws",
        "login": "AKIACRACKTEST",
        "password": "crack-secret-key",
        "extra": {"endpoint_url": ENDPOINT, "region_name": "eu-west-3"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CRACK_MINIO", json.dumps(connection))
    return "crack_minio"


def test_hook_builds_the_s3_client_from_the_connection(minio_connection):
    """Access key, region and MinIO endpoint come from the connection, and no AWS variable is written."""
    from crack_ops.hooks import CrackStoreHook

    before = dict(os.environ)
    store = CrackStoreHook("s3://inspections/site-7", aws_conn_id=minio_connection).get_store()

    assert store.uri == "s3://inspections/site-7"
    assert store.session.get_credentials().access_key == "AKIACRACKTEST"
    assert store.client.meta.endpoint_url == ENDPOINT
    assert store.client.meta.region_name == "eu-west-3"
    assert store.client.meta.config.retries["mode"] == "standard"
    assert dict(os.environ) == before
    assert not [name for name in AWS_VARIABLES if name in os.environ]


def test_the_session_covers_uris_a_step_opens_and_nothing_after(minio_connection):
    """Inside a pipelines step, s3:// URIs opened by URI (holdout, models) reuse the hook's session; outside, not."""
    from crack_ops.hooks import CrackStoreHook

    from crack_model.core.storage import open_store
    from crack_model.pipelines.stores import step_store

    store = CrackStoreHook("s3://inspections", aws_conn_id=minio_connection).get_store()
    with step_store(store) as opened:
        holdout = open_store(opened.url("holdout"))
        assert opened is store
        assert holdout.session is store.session
        assert holdout.endpoint_url == ENDPOINT
    after = open_store("s3://inspections/holdout")
    assert after.session is None and after.endpoint_url is None


def test_a_local_store_never_looks_up_the_connection(tmp_path):
    """A folder store opens even when the named connection does not exist (the embedded default needs no AWS)."""
    from crack_ops.hooks import CrackStoreHook

    store = CrackStoreHook(str(tmp_path), aws_conn_id="no_such_connection").get_store()
    store.write("probe.txt", b"ok")
    assert (tmp_path / "probe.txt").read_bytes() == b"ok"


def test_run_store_falls_back_to_the_store_variable(tmp_path, monkeypatch):
    """With no `store` param, run_store opens the Variable crack_store (here from AIRFLOW_VAR_CRACK_STORE)."""
    from crack_ops.hooks import run_store

    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", str(tmp_path / "from-variable"))
    store = run_store({"store": None, "aws_conn_id": "aws_default"})
    assert store.uri == str(tmp_path / "from-variable")


def test_store_is_the_param_then_the_variable_then_crack_store_then_airflow_home(tmp_path, monkeypatch):
    """The compose file's CRACK_STORE is only a default: a Variable set in the UI or CLI wins over it."""
    from crack_ops.hooks import CrackStoreHook

    monkeypatch.delenv("AIRFLOW_VAR_CRACK_STORE", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CRACK_STORE", "s3://inspections")
    metastore = {"crack_store": "s3://inspections-2027"}  # `airflow variables set crack_store ...`
    monkeypatch.setattr("airflow.sdk.Variable.get", lambda key, *args, **kwargs: metastore.get(key))
    assert CrackStoreHook("s3://from-param").store_uri() == "s3://from-param"
    assert CrackStoreHook().store_uri() == "s3://inspections-2027"
    metastore.clear()
    assert CrackStoreHook().store_uri() == "s3://inspections"
    monkeypatch.setenv("CRACK_STORE", " ")
    assert CrackStoreHook().store_uri() == str(tmp_path / "crack-store")


def test_run_runtime_takes_the_param_then_the_variable_then_auto(monkeypatch):
    """Scheduled nights carry no runtime param: the Variable crack_runtime is a deployment's lasting choice."""
    from crack_ops.hooks import run_runtime

    monkeypatch.delenv("AIRFLOW_VAR_CRACK_RUNTIME", raising=False)
    assert run_runtime({"runtime": None}) == "auto"
    assert run_runtime({}) == "auto"  # a run triggered before the param existed
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_RUNTIME", "litert-fp32")
    assert run_runtime({"runtime": None}) == "litert-fp32"
    assert run_runtime({"runtime": "keras"}) == "keras"
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_RUNTIME", "  ")
    assert run_runtime({"runtime": None}) == "auto"  # a blank Variable is no choice


def test_run_tile_budget_takes_the_param_then_the_variable_then_512(monkeypatch):
    """Scheduled nights carry no max_tiles param: the Variable crack_max_tiles is a drone site's lasting budget."""
    from crack_ops.hooks import run_tile_budget

    from crack_model.core.errors import CrackModelError

    monkeypatch.delenv("AIRFLOW_VAR_CRACK_MAX_TILES", raising=False)
    assert run_tile_budget({"max_tiles": None}) == run_tile_budget({}) == 512
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_MAX_TILES", " 2048 ")
    assert run_tile_budget({"max_tiles": None}) == 2048
    assert run_tile_budget({"max_tiles": 1024}) == 1024
    assert run_tile_budget({"max_tiles": 1000.0}) == 1000  # a whole number, as the param's schema takes it
    with pytest.raises(CrackModelError, match=r"param max_tiles is 'many': .*\(Variable crack_max_tiles, else 512\)"):
        run_tile_budget({"max_tiles": "many"})
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_MAX_TILES", "  ")
    assert run_tile_budget({}) == 512  # a blank Variable is no choice
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_MAX_TILES", "10000")
    with pytest.raises(CrackModelError, match="Variable crack_max_tiles is '10000': the tile budget must be from 64"):
        run_tile_budget({})


def test_a_run_triggered_with_a_setting_its_dag_does_not_know_fails_naming_it(monkeypatch):
    """Airflow takes any key into the params: a misspelled ``release_batch`` released nothing, without a word."""
    from types import SimpleNamespace

    import airflow.sdk
    from airflow.sdk.exceptions import AirflowFailException
    from crack_ops.hooks import refuse_unknown_settings

    dag = SimpleNamespace(dag_id="crack_nightly_scoring", params={"store": None, "release_batches": []})
    context = {"dag": dag, "dag_run": SimpleNamespace(conf={"store": "/s", "release_batch": ["b1"]})}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
    with pytest.raises(
        AirflowFailException,
        match=r"setting\(s\) 'release_batch', which DAG crack_nightly_scoring "
        r"does not know \(misspelled\?\): trigger it again with known ones: release_batches, store",
    ):
        refuse_unknown_settings()
    context["dag_run"] = SimpleNamespace(conf={"store": "/s", "release_batches": ["b1"]})
    refuse_unknown_settings()  # known settings only: nothing to say
