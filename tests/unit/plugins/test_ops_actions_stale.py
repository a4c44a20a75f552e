"""The ops view's action buttons posted from a page that is no longer true: the state changed since it was rendered."""

from __future__ import annotations

import pytest

from tests.unit.plugins.test_ops_view import (  # noqa: F401  (fixtures)
    SESSION,
    _form_token,
    _post,
    auth_manager,
    client,
    rest_api,
    store,
    view,
)

THIRD = "20261129T000000Z-dddd4444"


@pytest.fixture()
def promoted_three_times(tmp_path, monkeypatch):
    """FIRST, then SECOND, then THIRD promoted: THIRD is the champion and a rollback goes to SECOND."""
    from crack_model.core.model_card import ModelCard
    from crack_model.registry.versions import Registry
    from tests.unit.pipelines.promotions import SECOND, two_promotions

    promoted = two_promotions(tmp_path)
    folder = tmp_path / THIRD
    folder.mkdir()
    ModelCard(version=THIRD, threshold=0.5, created_at="2026-11-29T02:00:00Z").save(folder)
    (folder / "model.keras").write_bytes(b"not a real model")
    registry = Registry(promoted)
    registry.register(folder, "crack", actor="tester", run_id=f"manual__{THIRD}")
    registry.promote("crack", THIRD, expected_current=SECOND, actor="airflow:crack_retraining", reason="passed")
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", promoted.uri)
    return promoted


def test_a_rollback_posted_from_a_page_whose_champion_moved_is_refused_saying_so(
    client,  # noqa: F811
    rest_api,  # noqa: F811
    promoted_three_times,
):
    """The page showed THIRD (rollback to SECOND); another operator rolled back meanwhile (SECOND is champion). The
    post triggered a run whose note said "from THIRD to FIRST" (neither true) and which then failed; it is now a 409
    saying the champion moved and to reload, and nothing is triggered."""
    from crack_model.registry.versions import Registry
    from tests.unit.pipelines.promotions import SECOND

    with client.as_user("op") as session:
        page = session.get(f"/models/crack/{THIRD}", headers={"Cookie": f"_token={SESSION}"}).text
        assert f'name="expected_champion" value="{THIRD}"' in page
        Registry(promoted_three_times).rollback("crack", reason="bad night", actor="someone-else", run_id="r-other")
        response = _post(session, "/actions/rollback-champion",
                         {"csrf_token": _form_token(page), "model_name": "crack", "expected_champion": THIRD,
                          "reason": "false alarms"})  # fmt: skip
    assert response.status_code == 409, response.text
    assert f"the champion of crack is now {SECOND}, not {THIRD} as the page showed" in response.text
    assert rest_api.posts() == []
