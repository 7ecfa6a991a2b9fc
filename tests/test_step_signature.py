"""Steps as people write them (issue 12, point 8): components by their own names, the
context's doors by name, params as JSON gives them back, and a word when time is the wall's."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import replay
from replay.core.context import ClockWarning
from replay.engine.replay import replay as replay_run
from replay.errors import InputError, PipelineError

AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def score(table: pa.Table, weights: list[float], cutoff: float, now, rng, call) -> pa.Table:
    bureau = call("bureau", lambda ids: [len(i) for i in ids], table["id"].to_pylist())
    noise = rng.random(table.num_rows)
    value = pc.add(pc.multiply(table["x"], weights[0]), pa.array(noise))
    return (
        table.append_column("score", value)
        .append_column("high", pc.greater(value, cutoff))
        .append_column("bureau", pa.array(bureau))
        .append_column("day", pa.array([now.date()] * len(table)))
    )


def _pipe(**params) -> replay.Pipeline:
    return replay.Pipeline(
        "plain",
        [replay.Step("score", score, params={"weights": (2.0, 1.0), "cutoff": 3.0, **params})],
    )


def test_a_plain_function_gets_its_params_and_doors_by_name_and_replays_exact(store) -> None:
    result = replay.record(
        _pipe(), pa.table({"id": ["a", "bb"], "x": [1.0, 2.0]}), store=store, at=AT
    )
    assert result.output["bureau"].to_pylist() == [1, 2]
    assert result.output["day"].to_pylist() == [AT.date()] * 2
    assert replay_run(store, result.run_id).verdict == "exact"


def test_tuple_and_numpy_params_arrive_as_json_gives_them_back(store) -> None:
    seen = []

    def keep(table: pa.Table, bands, k) -> pa.Table:
        seen.append((bands, k, type(k)))
        return table

    pipe = replay.Pipeline(
        "p", [replay.Step("keep", keep, params={"bands": (0.1, np.float32(0.5)), "k": np.int64(3)})]
    )
    replay.record(pipe, pa.table({"x": [1.0]}), store=store, at=AT)
    assert seen == [([0.1, 0.5], 3, int)]


@pytest.mark.parametrize("value", [{1, 2}, datetime(2026, 1, 1), float("nan"), {1: "a"}])
def test_a_param_json_would_change_silently_is_refused(store, value) -> None:
    def keep(table: pa.Table, p) -> pa.Table:
        return table

    pipe = replay.Pipeline("p", [replay.Step("keep", keep, params={"p": value})])
    with pytest.raises(InputError, match="step 'keep': param p"):
        replay.record(pipe, pa.table({"x": [1.0]}), store=store)


def test_a_parameter_that_nothing_binds_is_refused_when_declared() -> None:
    def needs(table: pa.Table, model) -> pa.Table:
        return table

    with pytest.raises(PipelineError, match="parameter 'model' is not a model, data or param"):
        replay.Step("s", needs, params={"modle": 1})


def test_a_bound_name_the_function_does_not_take_is_refused() -> None:
    def takes(table: pa.Table, cutoff) -> pa.Table:
        return table

    with pytest.raises(PipelineError, match="takes no parameter 'cutof'"):
        replay.Step("s", takes, params={"cutoff": 1, "cutof": 2})


def test_one_name_in_two_groups_is_refused() -> None:
    def takes(table: pa.Table, pd) -> pa.Table:
        return table

    with pytest.raises(PipelineError, match="'pd' is both in models and in params"):
        replay.Step("s", takes, models={"pd": "pd.pkl"}, params={"pd": 1})


def test_reading_the_time_of_a_run_given_no_time_warns_once_per_step(store) -> None:
    import warnings

    pipe = _pipe()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(3):
            replay.record(pipe, pa.table({"id": ["a"], "x": [1.0]}), store=store)
            with warnings.catch_warnings():  # as scikit-learn does inside predict
                warnings.simplefilter("ignore", FutureWarning)
    clock = [w for w in seen if issubclass(w.category, ClockWarning)]
    assert len(clock) == 1
    assert "step 'score' reads the run's time" in str(clock[0].message)
    assert clock[0].filename == __file__  # points at the record() call


def test_a_run_given_its_time_does_not_warn(store, recwarn) -> None:
    replay.record(_pipe(), pa.table({"id": ["a"], "x": [1.0]}), store=store, at=AT)
    assert not [w for w in recwarn if issubclass(w.category, ClockWarning)]
