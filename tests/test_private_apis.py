"""Guards on the private parts of scikit-learn and waitress the code relies on, one test per internal, so that an
upgrade that moves one fails here, by name, instead of quietly switching the fast path off (the Predictor falls
back to model.predict when compiling fails) or breaking connection handling at run time.

Verified with the versions pinned in requirements.txt: scikit-learn 1.9.1, waitress 3.0.2 (VERIFIED below; the
first test fails when requirements.txt or the installed packages name another version, until the guards are run
against it and VERIFIED says so). Where each internal is used:
service/fastpath.py (scikit-learn), derivecard/introspect.py (scikit-learn), service/connections.py and
service/server.py and service/fastroute.py (waitress)."""
from __future__ import annotations

import inspect
import re
import socket
from importlib.metadata import version
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestRegressor)
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

ROOT = Path(__file__).resolve().parent.parent
VERIFIED = {"scikit-learn": "1.9.1", "waitress": "3.0.2"}
RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 3))
Y = X[:, 0] + RNG.normal(scale=0.1, size=60)
LABELS = (X[:, 1] > 0).astype(int)


def test_the_verified_versions_are_the_pinned_ones():
    """VERIFIED names what these guards were last checked against: the versions the image installs."""
    pinned = dict(re.findall(r"^([a-z-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert {name: pinned[name] for name in VERIFIED} == VERIFIED
    assert {name: version(name) for name in VERIFIED} == VERIFIED


# scikit-learn (service/fastpath.py unless noted)

def test_a_trees_compiled_predict_takes_float32_rows():
    tree = DecisionTreeRegressor(max_depth=3).fit(X, Y)
    values = tree.tree_.predict(X.astype(np.float32))
    assert values.shape == (60, 1) and np.array_equal(values[:, 0], tree.predict(X))


def test_a_forests_trees_are_in_estimators_():
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, Y)
    assert len(forest.estimators_) == 3 and all(hasattr(tree, "tree_") for tree in forest.estimators_)


def test_gradient_boostings_predict_stages_and_raw_predict_init():
    from sklearn.ensemble._gradient_boosting import predict_stages
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, Y)
    raw = model._raw_predict_init(X.astype(np.float32))
    predict_stages(model.estimators_, X.astype(np.float32), model.learning_rate, raw)
    assert np.allclose(raw.ravel(), model.predict(X))


def test_gradient_boostings_loss_turns_decisions_into_probabilities():
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, LABELS)
    assert np.allclose(model._loss.predict_proba(model.decision_function(X)), model.predict_proba(X))


def test_the_openmp_thread_count_helper():
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    assert _openmp_effective_n_threads() >= 1


def test_hist_gradient_boostings_predictors_baseline_and_iterations():
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    model = HistGradientBoostingRegressor(max_iter=5).fit(X, Y)
    assert model._preprocessor is None  # also read by derivecard/introspect.py
    raw = np.zeros((60, model.n_trees_per_iteration_), dtype=model._baseline_prediction.dtype, order="F")
    raw += model._baseline_prediction
    model._predict_iterations(X, model._predictors, raw, False, _openmp_effective_n_threads())
    assert np.allclose(model._loss.link.inverse(raw.ravel()), model.predict(X))


def test_hist_gradient_boostings_classifier_loss():
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, LABELS)
    assert np.allclose(model._loss.predict_proba(model._raw_predict(X)), model.predict_proba(X))


def test_the_logistic_function_of_the_array_api_helpers():
    from sklearn.utils._array_api import _expit
    assert np.allclose(_expit(np.array([0.0, 2.0])), 1 / (1 + np.exp(-np.array([0.0, 2.0]))))


def test_a_column_transformers_columns_per_transformer():
    transformer = ColumnTransformer([("scaled", StandardScaler(), [0, 2])], remainder="passthrough").fit(X)
    assert {name: list(columns) for name, columns in transformer._transformer_to_input_indices.items()} == \
        {"scaled": [0, 2], "remainder": [1]}


# waitress (service/connections.py, service/server.py)

def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_request_parser_hooks_and_attributes():
    from waitress.adjustments import Adjustments
    from waitress.parser import HTTPRequestParser
    assert _parameters(HTTPRequestParser.parse_header) == ["self", "header_plus"]
    parser = HTTPRequestParser(Adjustments())
    parser.received(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    assert parser.chunked and parser.expect_continue and parser.error is None
    assert (parser.command, parser.path, parser.headers["HOST"]) == ("POST", "/p", "x")
    assert callable(parser.body_rcv.getbuf) and parser.adj.max_request_body_size > 0


def test_a_body_under_the_overflow_reaches_the_app_as_a_bytes_io():
    """service/fastroute.py takes the body with getvalue(), without a copy, when wsgi.input is this BytesIO."""
    import io

    from waitress.adjustments import Adjustments
    from waitress.parser import HTTPRequestParser
    body = b"[" + b",".join([b"1.5"] * 30_000) + b"]"
    parser = HTTPRequestParser(Adjustments(inbuf_overflow=len(body) + 1))
    request = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    while request:
        request = request[parser.received(request):]
    stream = parser.get_body_stream()
    assert parser.completed and type(stream) is io.BytesIO and stream.tell() == 0 and stream.getvalue() == body


def test_the_chunked_receivers_state():
    from waitress.buffers import OverflowableBuffer
    from waitress.receiver import ChunkedReceiver
    assert _parameters(ChunkedReceiver.__init__) == ["self", "buf"]
    receiver = ChunkedReceiver(OverflowableBuffer(1 << 20))
    consumed = receiver.received(b"5\r\nhel")
    assert consumed == 6 and receiver.chunk_remainder == 2 and len(receiver.buf) == 3
    assert receiver.error is None and receiver.all_chunks_received is False


def test_the_tasks_and_the_error_task():
    from waitress.task import ErrorTask, WSGITask
    assert _parameters(ErrorTask.execute) == ["self"]
    assert _parameters(WSGITask.build_response_header) == ["self"]
    for name in ("set_close_on_finish", "write"):
        assert callable(getattr(ErrorTask, name))


def test_the_channel_and_the_server():
    from waitress.channel import HTTPChannel
    from waitress.server import create_server
    for name in ("parser_class", "task_class", "error_task_class", "send_continue", "service", "handle_close"):
        assert hasattr(HTTPChannel, name), name
    server = create_server(lambda environ, start: [], host="127.0.0.1", port=0, threads=1)
    try:
        for name in ("channel_class", "active_channels", "_map", "accepting", "handle_accept", "del_channel",
                     "socket", "asyncore", "task_dispatcher", "effective_host", "effective_port", "pull_trigger",
                     "adj"):
            assert hasattr(server, name), name
        assert server.adj.connection_limit > 0 and "use_poll" in _parameters(server.asyncore.loop)
        # service/server.py wraps readable(): asyncore asks it of the listener before each poll (service/shares.py)
        import inspect
        assert server.readable() is True and "obj.readable()" in inspect.getsource(server.asyncore.poll2)
        assert {"cancel_pending", "timeout"} <= set(_parameters(server.task_dispatcher.shutdown))
        client = socket.create_connection((server.effective_host, server.effective_port))
        try:
            server.handle_accept()
            channel = next(iter(server.active_channels.values()))
            for name in ("request", "requests", "requests_lock", "will_close", "last_activity", "total_outbufs_len",
                         "server", "adj"):
                assert hasattr(channel, name), name
        finally:
            client.close()
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        server.close()

