"""The real server process, with one worker and with several: JSON start-up log, SIGTERM under concurrent load
loses no request in flight, workers bound to CPUs, metrics summed over workers, a dead worker replaced."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from collections.abc import Callable, Iterator

import pytest

from imagebuild.http_calls import call, free_port, ready, wait_until

from . import pressure
from .hostile import drain_outcome, keep_alive_clients, stop_under_load

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps([{"age": 50 + i % 20, "sex": 1, "bmi": 25.0, "bp": 90, "s1": 180, "s2": 100, "s3": 50,
                    "s4": 4, "s5": 4.5, "s6": 90} for i in range(200)])



def log_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@contextlib.contextmanager
def running_server(workers: int, folder: Path, environment: dict[str, str] | None = None,
                   ) -> Iterator[tuple[subprocess.Popen, int]]:
    """The server process; its log goes to a file (a pipe read only at the end fills up and blocks it)."""
    port = free_port()
    env = {**os.environ, "SERVICE_PORT": str(port), "SERVICE_THREADS": "4", "SERVICE_DRAIN_SECONDS": "5",
           "SERVICE_WORKERS": str(workers), **(environment or {})}
    log_path = folder / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env, stderr=log, text=True)
    process.log_path = log_path
    process.workers = workers
    deadline = time.monotonic() + 30
    if wait_until(lambda: ready(f"http://127.0.0.1:{port}"), 30, lambda: process.poll() is None) is None:
        process.kill()
        pytest.fail(f"server not ready: {log_path.read_text()}")
    while time.monotonic() < deadline and log_path.read_text().count('"message": "model ') < workers:
        time.sleep(0.1)  # the first worker serves while the others load
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(params=[1, 2], ids=["1 worker", "2 workers"])
def server(request, tmp_path):
    """A server of one's own, for tests that stop or kill it."""
    with running_server(request.param, tmp_path) as started:
        yield started


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def shared_server(request, tmp_path_factory):
    """One server per worker count for the tests that only look (the only ones to send it /predict)."""
    with running_server(request.param, tmp_path_factory.mktemp("server")) as started:
        yield started


def test_start_up_is_logged_as_json_with_the_model(shared_server):
    process, _ = shared_server
    starts = [entry for entry in log_entries(process.log_path) if entry["message"].startswith("model ")]
    assert len(starts) == process.workers
    for start in starts:
        assert start["model"] == "diabetes-progression" and len(start["sha256"]) == 64
        assert start["level"] == "INFO" and start["time"].endswith("+00:00")
        assert start["micro_batching"] is True


def test_connections_opened_at_once_are_shared_between_the_workers(tmp_path):
    """Issue 28: both workers accept from one socket, and the first to wake adopted a burst whole (of 32
    keep-alive connections opened at once, 27-32 on one of two workers: the other idle while they lasted). A
    worker now leaves new connections to the other while it holds more than SLACK beyond it (service/shares.py)."""
    from collections import Counter
    from service.shares import SLACK
    with running_server(2, tmp_path) as (process, port):
        time.sleep(0.5)  # each worker in its loop, its share published
        connections = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
        request = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(BODY)}\r\n\r\n{BODY}").encode()
        for connection in connections:
            connection.sendall(request)
        for connection in connections:
            assert connection.recv(64).startswith(b"HTTP/1.1 200"), "no answer"
            connection.close()
        time.sleep(0.3)  # access lines are written within 50 ms
        answered = Counter(entry["pid"] for entry in log_entries(process.log_path) if entry.get("path") == "/predict")
    # at most SLACK + 1 apart when they adopt them (a connection a client closed counts until its worker sees it)
    assert sum(answered.values()) == 32 and min(answered.values()) >= 16 - 2 * SLACK, answered


def test_a_dead_workers_share_is_forgotten_at_once(tmp_path):
    """A worker holding more than its share waits for the others; when one of them dies, the supervisor clears its
    slot, so the survivor takes new connections at once rather than after the slot goes stale (2 s)."""
    with running_server(2, tmp_path) as (process, port):
        time.sleep(0.5)  # each worker in its loop, its share published
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(10)]
        ids = []
        for connection in connections:
            connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            ids.append(response.getheader("x-request-id"))
        time.sleep(0.3)  # access lines are written within 50 ms
        owner = {entry["request_id"]: entry["pid"] for entry in log_entries(process.log_path)
                 if entry.get("path") == "/predict"}
        victim = owner[ids[0]]
        for connection, request_id in zip(connections, ids, strict=True):
            if owner[request_id] == victim:
                connection.close()  # the victim holds none now: the survivor holds more than its share
        time.sleep(0.2)  # the victim's loop has seen the closes and published them
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.1)  # the supervisor reaps it within 0.05 s (left fresh, its slot held the survivor 0.9 s)
        started = time.monotonic()
        status, _, _ = call("POST", f"http://127.0.0.1:{port}/predict", BODY.encode(),
                            {"Content-Type": "application/json"}, timeout=10)
        waited = time.monotonic() - started
        for connection in connections:
            connection.close()
    assert status == 200 and waited < 0.5, f"a new connection waited {waited:.2f} s"


# The signal reaches a worker through its supervisor, and a request already sent may be read before the worker's
# handler runs (in one process too: the handler runs between the main thread's bytecodes), so "at once" is a short
# bound: well within a kubelet's readiness period (10 s by default) and within QUIET_SECONDS, the time an idle
# keep-alive connection keeps after the drain begins.
READY_TURNS = 0.2


def readiness_until_503(probe: http.client.HTTPConnection, within: float) -> list[int]:
    """Ask /health/ready on `probe` back to back until it answers 503 or `within` seconds pass; the statuses."""
    statuses: list[int] = []
    until = time.monotonic() + within
    while not statuses or (statuses[-1] != 503 and time.monotonic() < until):
        probe.request("GET", "/health/ready")
        answer = probe.getresponse()
        answer.read()
        statuses.append(answer.status)
    return statuses


def new_connection_clients(port: int, count: int, stop: threading.Event,
                           results: list[tuple[float, float, str]]) -> list[threading.Thread]:
    """`count` threads, each sending 200-row predictions back to back, each on a new connection."""
    def client() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.connect()
            except ConnectionRefusedError:
                results.append((sent, time.monotonic(), "refused"))  # never accepted: not in flight
                time.sleep(0.01)
                continue
            try:
                connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                results.append((sent, time.monotonic(), str(response.status)))
            except OSError as error:
                results.append((sent, time.monotonic(), type(error).__name__))
            finally:
                connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_sigterm_under_load_completes_every_request_in_flight(server):
    process, port = server
    results: list[tuple[float, float, str]] = []  # (sent, answered, outcome)
    stop = threading.Event()

    # a keep-alive connection opened before the signal: readiness must turn false on it within READY_TURNS
    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    probe.request("GET", "/health/live")
    probe.getresponse().read()

    threads = new_connection_clients(port, 16, stop, results)

    def sigterm() -> tuple[list[int], int]:
        process.send_signal(signal.SIGTERM)
        return readiness_until_503(probe, READY_TURNS), process.wait(timeout=8)

    signalled, exited, (readiness, code) = stop_under_load(threads, stop, sigterm)

    assert readiness[-1] == 503 and set(readiness[:-1]) <= {200}, readiness
    accepted = [r for r in results if r[2] != "refused"]
    # Started before the signal: every one must succeed. Started after it: the listener is closing, so a new
    # connection may be refused, never reset or answered with an error. (A reset was allowed here until issue 29:
    # a worker still loading the model held the listening socket without accepting, and what the kernel queued
    # meanwhile was reset when it ended; the supervisor now stops such workers first. A reset was seen once more,
    # in CI: a handshake under way when the listener closed, microseconds after the SYN filter; the listener now
    # adopts connections for HANDSHAKE_SECONDS after it, and the filter lets a handshake's final ACK through.)
    failures = [r for r in accepted if r[0] < signalled and r[2] != "200"]
    late_errors = [r for r in results if r[0] >= signalled and r[2] not in ("200", "refused")]
    in_flight = [r for r in accepted if r[0] < signalled < r[1]]
    assert code == 0 and exited < 5.5
    assert not failures, failures[:5]
    assert not late_errors, late_errors[:5]
    assert in_flight, "no request was in flight at SIGTERM: the test proved nothing"
    assert len(accepted) > 20


def test_sigterm_loses_nothing_on_busy_keep_alive_connections(server):
    """Issue 29: pooled clients (requests.Session) sending back to back were each cut mid-request at the drain
    deadline, because no answer told them to close. From SIGTERM on, every answer carries Connection: close."""
    process, port = server
    results: list[tuple[float, float, str]] = []
    stop = threading.Event()
    threads = keep_alive_clients(port, 8, stop, results)

    def sigterm() -> int:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=8)

    signalled, exited, code = stop_under_load(threads, stop, sigterm)
    failed, in_flight = drain_outcome(results, signalled)
    assert code == 0 and not failed, failed[:5]
    assert in_flight, "no request was in flight at SIGTERM: the test proved nothing"
    # every client left when told: no worker's drain ran into its deadline (5 s) with a connection still open
    stops = [entry for entry in log_entries(process.log_path) if entry["message"].startswith("stopped ")]
    assert [entry["connections_cut"] for entry in stops] == [0] * process.workers, stops
    assert exited < 5.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters are Linux's")
def test_a_closing_listener_keeps_what_is_queued_and_completes_no_new_handshake():
    """What the drain does before it closes the listener: a connection already queued is still accepted with its
    request; a new one completes no handshake (its SYN is dropped), so it can never be reset mid-request, and
    once the listener is closed it is refused."""
    from service.server import _refuse_new_connections
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        queued = socket.create_connection(listener.getsockname(), timeout=2)
        queued.sendall(b"POST /predict")
        _refuse_new_connections(listener)
        with socket.socket() as late, pytest.raises(TimeoutError):
            late.settimeout(0.3)
            late.connect(listener.getsockname())
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.recv(64) == b"POST /predict"
        address = listener.getsockname()
    queued.close()
    with socket.socket() as after, pytest.raises(ConnectionRefusedError):
        after.settimeout(2)
        after.connect(address)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters are Linux's")
@pytest.mark.parametrize("flags, kept", [(0x02, False), (0x03, False), (0x12, True), (0x10, True), (0x18, True),
                                         (0x11, True), (0x14, True)], ids=["SYN", "SYN FIN", "SYN ACK", "ACK",
                                                                           "PSH ACK", "FIN ACK", "RST ACK"])
def test_the_listeners_filter_drops_only_a_new_connections_syn(flags, kept):
    """The drain's socket filter, run by this kernel: only a SYN without ACK is dropped, so the final ACK of a
    handshake already under way, and the data after it, still reach the listener (a filter that dropped
    everything left such a connection half open, to be reset at the close). A TCP filter reads the TCP header,
    whose flags are its byte 13; attached to a UDP socket the same program reads the datagram from its 8-byte
    header, so byte 5 of the payload stands for the flags."""
    from service.server import _refuse_new_connections
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.2)
        _refuse_new_connections(receiver)
        sender.sendto(bytes(5) + bytes([flags]) + bytes(6), receiver.getsockname())
        sender.sendto(bytes(5) + bytes([0x10]) + b"marker", receiver.getsockname())  # kept whatever came before
        received = [receiver.recv(64)]
        with contextlib.suppress(TimeoutError):
            received.append(receiver.recv(64))
    assert received[-1].endswith(b"marker")
    assert (len(received) == 2) is kept, received


def serve_in_this_process(monkeypatch, clients: Callable[[tuple[str, int], threading.Event], None],
                          ) -> tuple[socket.socket, float]:
    """The server in this process, its socket filter left off (so that connections still complete their handshake
    after SIGTERM), with `clients(address, serving)` on a thread beside it (`serving` is set once a SIGTERM would
    drain); returns the listening socket and the seconds from serve()'s start to the clients' end."""
    from service.app import create_app
    from service import server as server_module
    monkeypatch.setattr(server_module, "_refuse_new_connections", lambda listener: None)
    app = create_app({"MODEL_DIR": str(ROOT / "models" / "diabetes"), "DRAIN_SECONDS": 5.0})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    serving = threading.Event()
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=clients, args=(listener.getsockname(), serving), daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        server_module.serve(app, listener, serving=serving.set)
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    thread.join(5)
    return listener, time.monotonic() - started


def test_a_handshake_completed_during_the_drain_is_answered(monkeypatch):
    """The server in this process, its socket filter left off, so that connections still complete their
    handshake after SIGTERM, as one whose SYN the kernel took just before the filter does: each is adopted and
    answered (with Connection: close) until HANDSHAKE_SECONDS after the signal, and only then is the listener
    closed. Before, it closed at once, and such a connection was reset with its request unanswered."""
    from service import server as server_module
    answers: list[tuple[float, int, str | None]] = []

    def late_clients(address: tuple[str, int], serving: threading.Event) -> None:
        serving.wait(10)
        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        while time.monotonic() - signalled < 0.2:  # within HANDSHAKE_SECONDS (0.25)
            connection = http.client.HTTPConnection(*address, timeout=5)
            try:
                connection.request("GET", "/health/live")
                response = connection.getresponse()
                response.read()
                answers.append((time.monotonic() - signalled, response.status, response.getheader("Connection")))
            except OSError as error:
                answers.append((time.monotonic() - signalled, 0, type(error).__name__))
            finally:
                connection.close()
            time.sleep(0.02)

    listener, seconds = serve_in_this_process(monkeypatch, late_clients)
    assert server_module.HANDSHAKE_SECONDS >= 0.2 and len(answers) >= 3, answers
    assert {(status, connection) for _, status, connection in answers} == {(200, "close")}, answers
    assert listener.fileno() == -1 and seconds < 5


def test_clients_slower_than_the_drains_quiet_time_are_answered(monkeypatch):
    """ci53 lost a request in `docker stop` under busy keep-alive clients, on a machine busy building images: it was
    reset about a second after it began. The drain closed every connection quiet for a quarter of a second, and a
    client thread that slow between connecting (or its last answer) and sending found its connection closed. Now
    a connection that has sent nothing yet is kept until the drain limit (its client is about to send, as Go's
    net/http keeps a new connection), and one answered before the signal is kept QUIET_SECONDS: both are answered,
    with Connection: close, while one that stays silent is closed after QUIET_SECONDS, not at the limit. The server
    runs in this process (as above), its socket filter left off."""
    from service import server as server_module
    answers: dict[str, tuple[int, str | None] | str] = {}

    def ask(name: str, connection: http.client.HTTPConnection) -> None:
        try:
            connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            answers[name] = (response.status, response.getheader("Connection"))
        except OSError as error:
            answers[name] = repr(error)

    def slow_clients(address: tuple[str, int], serving: threading.Event) -> None:
        serving.wait(10)
        fresh, kept, idle = (http.client.HTTPConnection(*address, timeout=10) for _ in range(3))
        fresh.connect()  # and nothing sent yet
        ask("kept before", kept)
        ask("idle before", idle)
        time.sleep(0.1)  # all three adopted
        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.6 * server_module.QUIET_SECONDS)
        ask("kept", kept)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - signalled)))
        ask("fresh", fresh)
        assert idle.sock is not None
        answers["idle closed"] = idle.sock.recv(1) == b""
        for connection in (fresh, kept, idle):
            connection.close()

    _, seconds = serve_in_this_process(monkeypatch, slow_clients)
    assert server_module.QUIET_SECONDS >= 0.5
    assert answers == {"kept before": (200, None), "idle before": (200, None), "kept": (200, "close"),
                       "fresh": (200, "close"), "idle closed": True}, answers
    assert seconds < 5  # the clients ended the drain, not its limit


def test_the_drain_closes_a_quiet_connection_only_with_nothing_waiting_unread():
    """A connection quiet in the server's view may have a request waiting in the kernel (a worker starved of CPU
    has not read it yet): closing it would reset that request unanswered, so the drain asks the kernel first, and
    closes at once rather than on the loop's next pass."""
    from service.server import _close_finished
    long_ago = time.time() - 10
    pairs = [socket.socketpair() for _ in range(4)]
    pairs[0][1].sendall(b"POST /predict HTTP/1.1\r\n")  # arrived, not read yet
    closed: list[str] = []
    kinds = {"unread": (True, long_ago), "done": (True, long_ago), "never heard from": (False, long_ago),
             "active": (True, time.time())}
    channels = {ours.fileno(): SimpleNamespace(heard_from=heard, last_activity=last, requests=[], request=None,
                                               total_outbufs_len=0, handle_close=lambda kind=kind: closed.append(kind))
                for (ours, _), (kind, (heard, last)) in zip(pairs, kinds.items(), strict=True)}
    _close_finished(SimpleNamespace(active_channels=channels), draining_since=long_ago)
    assert closed == ["done"]
    for pair in pairs:
        for end in pair:
            end.close()


@pytest.mark.parametrize("kind", ["CPU", "disk", "CPU and disk"])
def test_sigterm_under_pressure_loses_nothing(kind, tmp_path):
    """Issue 28: a drain once failed 16 of 3,593 requests on a machine busy building images. Two workers, 8
    pooled and 8 new-connection clients, the machine under `kind` pressure from before the server starts."""
    with contextlib.ExitStack() as stack:
        if "CPU" in kind:
            stack.enter_context(pressure.cpu_hogs())
        if "disk" in kind:
            stack.enter_context(pressure.disk_writers(tmp_path))
        process, port = stack.enter_context(running_server(2, tmp_path))
        results: list[tuple[float, float, str]] = []
        stop = threading.Event()
        threads = keep_alive_clients(port, 8, stop, results) + new_connection_clients(port, 8, stop, results)

        def sigterm() -> int:
            process.send_signal(signal.SIGTERM)
            return process.wait(timeout=15)

        signalled, exited, code = stop_under_load(threads, stop, sigterm)
    failed, in_flight = drain_outcome(results, signalled)
    print(f"{kind}: {len(results)} requests, {len(in_flight)} in flight, {len(failed)} failed, drain {exited:.2f} s")
    assert code == 0 and not failed, failed[:5]
    assert in_flight, "no request was in flight at SIGTERM: the test proved nothing"


def get(port: int, path: str) -> tuple[int, bytes]:
    status, _, body = call("GET", f"http://127.0.0.1:{port}{path}")
    return status, body


def predict(port: int) -> int:
    return call("POST", f"http://127.0.0.1:{port}/predict", BODY.encode(), {"Content-Type": "application/json"})[0]


def worker_starts(process) -> dict[int, dict]:
    """pid -> the worker's start-up log entry."""
    return {entry["pid"]: entry for entry in log_entries(process.log_path) if entry["message"].startswith("model ")}


def test_workers_are_bound_to_cpus_and_metrics_sum_over_them(shared_server):
    from service.cpus import budget
    process, port = shared_server
    cpus = list(budget().cpus)
    starts = worker_starts(process)
    assert sorted(entry["worker"] for entry in starts.values()) == list(range(process.workers))
    for entry in starts.values():
        assert entry["cpus"] == [cpus[entry["worker"] % len(cpus)]]

    # new connections land on either worker; the counter must see every request whichever answered it
    statuses = [predict(port) for _ in range(40)]
    assert statuses == [200] * 40
    _, text = get(port, "/metrics")
    total = [line for line in text.decode().splitlines()
             if line.startswith('http_requests_total{endpoint="/predict",method="POST",status="200"}')]
    assert total and float(total[0].split()[-1]) == 40.0
    assert 'predicted_rows_total{endpoint="/predict"} 8000.0' in text.decode()
    assert "model_info{" in text.decode()


@pytest.mark.parametrize("server", [2], indirect=True, ids=["2 workers"])
def test_a_worker_that_dies_is_replaced_its_counts_kept_and_the_shared_metrics_removed_at_exit(server):
    process, port = server
    assert [predict(port) for _ in range(20)] == [200] * 20
    folder = next(e["metrics_folder"] for e in log_entries(process.log_path) if "metrics_folder" in e)
    # a worker that counted some of them (the kernel may hand every new connection to the same one)
    victim = int(next(Path(folder).glob("counter_*.db")).stem.split("_")[1])
    assert victim in worker_starts(process)
    counted_before = requests_counted(port)
    assert counted_before == 20
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(worker_starts(process)) < process.workers + 1:
        time.sleep(0.1)
    assert len(worker_starts(process)) == process.workers + 1, process.log_path.read_text()[-2000:]
    assert [predict(port) for _ in range(10)] == [200] * 10
    replaced = [e for e in log_entries(process.log_path) if e["message"].startswith("worker ") and e["level"] == "ERROR"]
    assert replaced and "was killed by SIGKILL; starting another" in replaced[0]["message"]
    assert Path(folder).is_dir()
    # the dead worker's counts are kept (folded into one file per kind), its own files gone
    assert requests_counted(port) == counted_before + 10
    assert not list(Path(folder).glob(f"*_{victim}.db"))
    assert {p.name for p in Path(folder).glob("*_dead.db")} == {"counter_dead.db", "histogram_dead.db"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert not Path(folder).exists()


def requests_counted(port: int) -> float:
    """POST /predict requests answered 200, summed over every worker, live or dead."""
    _, text = get(port, "/metrics")
    lines = [line for line in text.decode().splitlines()
             if line.startswith('http_requests_total{endpoint="/predict",method="POST",status="200"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


@pytest.mark.parametrize("server", [2], indirect=True, ids=["2 workers"])
def test_workers_leave_when_their_supervisor_is_killed(server):
    """SIGKILL (the OOM killer) gives the supervisor no chance to stop its workers: they notice and leave, and
    the port is free for the next start."""
    import socket
    process, port = server
    workers = list(worker_starts(process))
    process.kill()
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(gone(pid) for pid in workers):
        time.sleep(0.1)
    assert all(gone(pid) for pid in workers), process.log_path.read_text()[-2000:]
    with socket.socket() as again:  # as the next start binds it (connections in TIME_WAIT are no obstacle)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
    assert "is gone: stopping" in process.log_path.read_text()


STRAY_CHILD = """
import os, signal, socket, subprocess, sys, tempfile, threading, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
import service.workers as workers

def pretend_to_serve(listener, worker, ready_fd=None, parent=None, share=None):
    if ready_fd is not None:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(60)
    return 0

workers.serve_worker = pretend_to_serve
stray = subprocess.Popen(["sleep", "0.2"])  # a child that is not a worker: the supervisor's waitpid reaps it
threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
settings = {"PIN_CPUS": 0, "DRAIN_SECONDS": 1.0}
print(workers.Supervisor(socket.socket(), 1, [0], settings).run())
"""


def test_the_supervisor_reaps_a_child_that_is_not_a_worker():
    result = subprocess.run([sys.executable, "-c", STRAY_CHILD], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "0" and "KeyError" not in result.stderr


STOP_AT_START = """
import os, signal, socket, sys, tempfile, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
import service.workers as workers
started = []

def serve(listener, worker, ready_fd=None, parent=None, share=None):
    print(f"started {worker}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # as serve() drains
    if worker == 0:  # the stop comes as the first worker says it is ready: both wait for the supervisor at once
        os.kill(parent, signal.SIGSTOP)
        os.write(ready_fd, b"r")
        os.kill(parent, signal.SIGTERM)
        os.kill(parent, signal.SIGCONT)
    else:
        time.sleep(3)  # loading the model
        os.write(ready_fd, b"r")
    while True:
        time.sleep(1)

def loading(listener, worker, ready_fd=None, parent=None, share=None):
    time.sleep(3)  # loading the model: a SIGTERM ends it at once
    return 0

supervisor = workers.Supervisor(socket.socket(), 2, [0], {"PIN_CPUS": 0, "DRAIN_SECONDS": 1.0})
if sys.argv[1] == "run":
    workers.serve_worker = serve
    sys.exit(supervisor.run())
workers.serve_worker = loading  # a worker signalled the moment it is forked, under the supervisor's handler
signal.signal(signal.SIGTERM, supervisor.request_stop)
signal.set_wakeup_fd(supervisor.wake_write)
supervisor.start(1)
pid = next(iter(supervisor.children))
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("how", ["run", "fork"])
def test_a_stop_as_workers_start_stops_them_all_at_once(how):
    """ci55: `docker stop` right after the image was ready took 7 s. The stop came as the first worker said it was
    ready; the supervisor still started the second one, and signalled it as it was forked, before the worker had
    set SIGTERM's default action: the supervisor's own handler, inherited, took the signal, and the worker served
    on until killed at the drain limit. Now no worker is started once a stop is requested (`run`), and a signal
    sent to a worker as it is forked ends it (`fork`: SIGTERM is blocked across the fork)."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", STOP_AT_START, how], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    elapsed = time.monotonic() - started
    if how == "run":
        assert result.returncode == 0 and result.stdout.split() == ["started", "0"], result.stderr[-2000:]
    else:
        assert result.stdout.strip() == str(-signal.SIGTERM), result.stderr[-2000:]
    assert elapsed < 2.5, f"{elapsed:.1f} s"


CRASHING_WORKERS = """
import os, signal, socket, sys, tempfile, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
import service.workers as workers

def crash(listener, worker, ready_fd=None, parent=None, share=None):
    if sys.argv[1] == "after ready":
        os.write(ready_fd, b"r")
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGBUS)  # as a worker does when a full /dev/shm cannot take its metrics

workers.serve_worker = crash
workers.RESPAWN_PAUSE = 0.1
if sys.argv[1] == "after ready":
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
sys.exit(workers.Supervisor(socket.socket(), 2, [0], {"PIN_CPUS": 0, "DRAIN_SECONDS": 1.0}).run())
"""


def test_workers_that_keep_dying_before_they_are_ready_stop_the_supervisor():
    """Issue 29: with /dev/shm full every new worker died of SIGBUS at start and was replaced forever, while the
    container stayed "Up". Now the supervisor gives up after BOOT_FAILURES in a row, with one line."""
    from service.workers import BOOT_FAILURES, WORKERS_FAILING
    result = subprocess.run([sys.executable, "-c", CRASHING_WORKERS, "before ready"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == WORKERS_FAILING, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {BOOT_FAILURES} workers in a row died before they were ready (the last was killed "
                      f"by SIGBUS); stopping so that the container is restarted (a full /dev/shm or too little "
                      f"memory?)"]
    assert result.stderr.count("starting another") == BOOT_FAILURES - 1


def test_workers_that_die_after_they_were_ready_are_replaced_without_end():
    from service.workers import BOOT_FAILURES
    result = subprocess.run([sys.executable, "-c", CRASHING_WORKERS, "after ready"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]  # stopped by SIGTERM after 3 s, not by giving up
    assert result.stderr.count("was killed by SIGBUS; starting another") > BOOT_FAILURES
