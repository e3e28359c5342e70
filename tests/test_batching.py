"""Micro-batching: concurrent requests share estimator calls and still get, bit for bit, what model.predict
gives for their own rows; a bad request fails alone; models whose rows are not independent are not batched.

The diabetes pipeline (scaler + gradient boosting) stacks exactly. The iris pipeline (scaler + logistic
regression) does not: its probabilities for a row computed with others differ in the last bits (1e-17) from
those computed alone (BLAS takes another path for one row), so the service does not batch it."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from service.batching import MicroBatcher
from service.bundle import load_bundle
from service.errors import ApiError
from service.predictor import Predictor

from .conftest import BUNDLES

CLIENTS = 16


@pytest.fixture(scope="module")
def diabetes():
    return load_bundle(BUNDLES["diabetes"])


@pytest.fixture(scope="module")
def iris():
    return load_bundle(BUNDLES["iris"])


def random_rows(bundle, count: int, rng: np.random.Generator) -> list[list[float]]:
    return [[float(rng.uniform(f["min"], f["max"])) for f in bundle.card["features"]] for _ in range(count)]


def run_together(calls) -> list:
    """Run each call in its own thread, all released at once; results (or exceptions) in call order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # noqa: BLE001 - compared by the test
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_requests_get_exactly_what_the_model_gives_them(diabetes):
    predictor = Predictor(diabetes, batch_max_rows=64, batch_max_wait=0.05)
    sizes: list[int] = []
    infer = predictor.batcher.infer
    predictor.batcher.infer = lambda matrix: (sizes.append(len(matrix)), infer(matrix))[1]
    rng = np.random.default_rng(3)
    requests = [random_rows(diabetes, int(rng.integers(1, 6)), rng) for _ in range(CLIENTS)]
    all_announced = threading.Barrier(CLIENTS)

    def call(rows):
        with predictor.coming():  # as the routes do while they read the body
            all_announced.wait()
            return predictor.predict(rows)

    for _ in range(5):
        answers = run_together([lambda rows=rows: call(rows) for rows in requests])
        for rows, answer in zip(requests, answers, strict=True):
            assert answer["predictions"] == diabetes.model.predict(np.asarray(rows)).tolist()  # bit for bit
    assert max(sizes) > 5, f"no batch formed: {sizes}"  # the test proves nothing unless rows were stacked
    assert max(sizes) <= 64


def test_a_request_the_model_rejects_fails_alone(diabetes):
    predictor = Predictor(diabetes, batch_max_rows=64, batch_max_wait=0.05)
    good = random_rows(diabetes, 1, np.random.default_rng(5))[0]
    bad = [1e300] + good[1:]  # finite, but gradient boosting's float32 cast overflows
    requests = [[good]] * 7 + [[bad]] + [[good]] * 7
    all_announced = threading.Barrier(len(requests))

    def call(rows):
        with predictor.coming():
            all_announced.wait()
            return predictor.predict(rows)

    answers = run_together([lambda rows=rows: call(rows) for rows in requests])
    assert isinstance(answers[7], ApiError) and answers[7].code == "rejected_by_model"
    expected = diabetes.model.predict(np.asarray([good])).tolist()
    assert all(answer["predictions"] == expected for i, answer in enumerate(answers) if i != 7)


def test_a_lone_request_does_not_wait_for_company(diabetes):
    predictor = Predictor(diabetes, batch_max_rows=64, batch_max_wait=2.0)
    rows = random_rows(diabetes, 1, np.random.default_rng(1))
    for _ in range(3):
        started = time.monotonic()
        with predictor.coming():
            predictor.predict(rows)
        assert time.monotonic() - started < 1.0  # far below the 2 s it would wait for company


def test_batches_never_exceed_max_rows_and_big_requests_run_alone():
    calls: list[int] = []

    def infer(rows: list[list[float]]) -> np.ndarray:
        calls.append(len(rows))
        time.sleep(0.01)  # long enough for the others to queue
        return np.asarray(rows).sum(axis=1)

    batcher = MicroBatcher(infer, lambda out, sizes: np.split(out, np.cumsum(sizes)[:-1]), max_rows=8, max_wait=0.05)
    matrices = [[[float(i)] * 2] * n for i, n in enumerate([3, 3, 3, 3, 20, 1, 1, 1])]
    answers = run_together([lambda m=m: batcher(m) for m in matrices])
    for matrix, answer in zip(matrices, answers, strict=True):
        assert answer.tolist() == np.asarray(matrix).sum(axis=1).tolist()
    assert max(calls) == 20 and all(size <= 8 for size in calls if size != 20)
    assert sum(calls) == sum(len(m) for m in matrices)


def test_a_request_no_other_could_join_runs_at_once_beside_a_batch():
    small_running, release = threading.Event(), threading.Event()

    def infer(rows: list[list[float]]) -> np.ndarray:
        if len(rows) < 8:
            small_running.set()
            assert release.wait(10)
        return np.asarray(rows).sum(axis=1)

    batcher = MicroBatcher(infer, lambda out, sizes: np.split(out, np.cumsum(sizes)[:-1]), max_rows=8, max_wait=0.05)
    small = threading.Thread(target=batcher, args=([[1.0, 2.0]],))
    small.start()
    assert small_running.wait(10)
    answers: list[np.ndarray] = []

    def big() -> None:
        with batcher.coming():  # announced, as the service's requests are
            answers.append(batcher([[1.0, 1.0]] * 8))

    thread = threading.Thread(target=big)
    thread.start()
    thread.join(5)  # queued behind the small batch, it would wait for its release
    finished = not thread.is_alive()
    release.set()
    small.join(10)
    thread.join(10)
    assert finished and answers[0].tolist() == [2.0] * 8 and batcher._coming == 0


def test_a_model_whose_rows_depend_on_each_other_is_not_batched(diabetes, caplog):
    class BatchDependent:
        """Answers depend on how many rows come together (like a model that normalises over its input)."""
        def predict(self, matrix):
            return matrix[:, 0] - matrix[:, 0].mean()

    predictor = Predictor(dataclasses.replace(diabetes, model=BatchDependent()), batch_max_rows=64)
    assert predictor.batcher is None
    assert "micro-batching is off" in caplog.text
    assert Predictor(diabetes, batch_max_rows=64).batcher is not None
    assert Predictor(diabetes, batch_max_rows=0).batcher is None


def test_logistic_regression_is_not_batched_because_stacking_changes_its_last_bits(iris):
    assert Predictor(iris, batch_max_rows=64).batcher is None
    rng = np.random.default_rng(0)
    rows = np.asarray(random_rows(iris, 32, rng))
    together = iris.model.predict_proba(rows)
    alone = np.concatenate([iris.model.predict_proba(row[np.newaxis, :]) for row in rows])
    assert not np.array_equal(together, alone)  # the check is right to refuse
    assert np.allclose(together, alone, rtol=0, atol=1e-15)
