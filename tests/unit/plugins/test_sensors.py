"""NewBatchesSensor on a real local store: done with the unscored batches, not done when there are none."""

from __future__ import annotations

import pytest

from crack_model.core.local_store import LocalStore


def test_poke_is_done_with_the_batches_that_have_no_success_marker(local_store):
    """b1 has results/b1/_SUCCESS, b2 does not: the sensor is done and pushes ["b2"]."""
    from crack_ops.sensors import NewBatchesSensor

    result = NewBatchesSensor(task_id="wait_for_new_batches", store=str(local_store)).poke({})
    assert result.is_done is True
    assert result.xcom_value == ["b2"]


def test_poke_is_not_done_when_every_batch_is_scored(local_store):
    """Once b2 has _SUCCESS too, poke returns False (the sensor keeps waiting)."""
    from crack_ops.sensors import NewBatchesSensor

    LocalStore(local_store).write("results/b2/_SUCCESS", b"")
    assert NewBatchesSensor(task_id="wait_for_new_batches", store=str(local_store)).poke({}) is False


def test_templated_params_render_as_native_values(local_store):
    """The max_batches template renders as an int and the batch_ids one as a list, which short-circuits the listing."""
    from crack_ops.sensors import NewBatchesSensor

    sensor = NewBatchesSensor(
        task_id="wait_for_new_batches", store="{{ params.store }}", batch_ids="{{ params.batch_ids }}",
        max_batches="{{ params.max_batches }}",
    )  # fmt: skip
    sensor.render_template_fields({"params": {"store": str(local_store), "batch_ids": ["b1"], "max_batches": 3}})
    assert sensor.max_batches == 3
    assert sensor.batch_ids == ["b1"]
    assert sensor.poke({}).xcom_value == ["b1"]
    twice = NewBatchesSensor(task_id="wait_for_new_batches", store=str(local_store), batch_ids=["b3", "b1", "b3"])
    assert twice.poke({}).xcom_value == ["b3", "b1"]  # named twice: validated and counted once


def test_poke_fails_naming_an_incoming_that_is_a_symbolic_link(tmp_path, local_store):
    """Not an empty incoming/ to wait on for hours and soft-fail as a quiet night: the task fails with the reason."""
    from crack_ops.sensors import NewBatchesSensor

    from crack_model.core.errors import CrackModelError

    store = tmp_path / "store"
    store.mkdir()
    (store / "incoming").symlink_to(local_store / "incoming")
    sensor = NewBatchesSensor(task_id="wait_for_new_batches", store=str(store), soft_fail=True)
    with pytest.raises(CrackModelError, match=r"no batch can be found: .*is a symbolic link"):
        sensor.poke({})


def test_poke_fails_on_a_store_that_holds_nothing_instead_of_waiting(tmp_path):
    """A mistyped store param or Variable: the sensor waited three hours for uploads that could never come there, and
    the run stayed running; a store that holds a registry but no upload yet still waits."""
    from crack_ops.sensors import NewBatchesSensor

    from crack_model.core.errors import CrackModelError

    with pytest.raises(CrackModelError, match="holds nothing at all: check the store's path"):
        NewBatchesSensor(task_id="wait_for_new_batches", store=str(tmp_path / "nowhere")).poke({})
    (tmp_path / "store" / "models" / "crack").mkdir(parents=True)
    (tmp_path / "store" / "models" / "crack" / "aliases.json").write_text("{}")
    assert NewBatchesSensor(task_id="wait_for_new_batches", store=str(tmp_path / "store")).poke({}) is False
