"""Soak: 32 concurrent clients send mixed valid and invalid traffic to the image for a bounded time. Every answer
has the status (and, for valid requests, the body) the in-process app gives; resident memory grows < 10%."""
from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Iterator

import pytest

from benchmark.targets import memory_mb, process_tree
from service.app import create_app
from service.cpus import budget
from service.state import EXTENSION

from ..conftest import BUNDLES
from ..test_errors import BAD_BODIES, good_record
from .conftest import Running, run_container

pytestmark = pytest.mark.container

CLIENTS = 32
# Resident memory rises for the first seconds, while each worker's threads meet the large bodies for the first
# time, then stays flat: measured here 312 MB at start, 366.9 MB after 5 s, 368.1 MB after 60 s.
WARM_UP_SECONDS = 10.0
SOAK_SECONDS = 30.0
MAX_REQUESTS = 60_000  # a bound on count as well as on time
MAX_RSS_GROWTH = 0.10
LIMITS = {"MAX_ROWS": 50, "MAX_BODY_BYTES": 64 * 1024}


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    body: bytes | None
    status: int
    answer: bytes | None  # the in-process body for valid requests, None where only the status is checked


def traffic() -> list[Call]:
    """Valid predictions in every shape and the V2 route, every bad body, and HTTP-level mistakes."""
    app = create_app({"MODEL_DIR": str(BUNDLES["diabetes"]), **LIMITS})
    client = app.test_client()
    record = good_record(app)
    name = app.extensions[EXTENSION].bundle.card["name"]
    rng = random.Random(7)
    valid: list[tuple[str, str, object]] = [
        ("one record", "/predict", record),
        ("records", "/predict", [{k: v * rng.uniform(0.9, 1.1) for k, v in record.items()} for _ in range(20)]),
        ("columns", "/predict", {k: {str(i): v + i for i in range(5)} for k, v in record.items()}),
        ("v2 infer", f"/v2/models/{name}/infer",
         {"id": "soak", "inputs": [{"name": "input-0", "shape": [1, len(record)], "datatype": "FP64", "data": list(record.values())}]}),
    ]
    calls = []
    for label, path, payload in valid:
        body = json.dumps(payload).encode()
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 200
        calls.append(Call(label, "POST", path, body, 200, response.data))
    for label, build, status, _code, _field in BAD_BODIES:
        body = build(app)
        calls.append(Call(label, "POST", "/predict", body if isinstance(body, bytes) else body.encode(), status, None))
    calls += [
        Call("over the body limit", "POST", "/predict", b"[" + b"1," * 40_000 + b"1]", 413, None),
        Call("unknown route", "GET", "/nope", None, 404, None),
        Call("unknown v2 model", "POST", "/v2/models/nope/infer", b"{}", 404, None),
        Call("wrong method", "GET", "/predict", None, 405, None),
        Call("examples", "GET", "/examples", None, 200, None),
        Call("readiness", "GET", "/health/ready", None, 200, None),
    ]
    return calls


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    unexpected: list[str] = field(default_factory=list)

    def record(self, problem: str | None) -> bool:
        """Count one request; False once the request bound is reached."""
        with self.lock:
            self.sent += 1
            if problem and len(self.unexpected) < 20:
                self.unexpected.append(problem)
            return self.sent < MAX_REQUESTS


def client_loop(port: int, calls: list[Call], seed: int, until: float, tally: Tally) -> None:
    rng = random.Random(seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < until:
        call = rng.choice(calls)
        problem = None
        try:
            headers = {"Content-Type": "application/json"} if call.body is not None else {}
            connection.request(call.method, call.path, body=call.body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != call.status:
                problem = f"{call.name}: status {response.status}, expected {call.status}: {body[:200]!r}"
            elif call.answer is not None and json.loads(body) != json.loads(call.answer):
                problem = f"{call.name}: answer differs from in process: {body[:200]!r}"
            if response.will_close:
                connection.close()
        except (OSError, http.client.HTTPException) as error:
            problem = f"{call.name}: {type(error).__name__}: {error}"
            connection.close()
        if not tally.record(problem):
            break
    connection.close()


def run_clients(port: int, calls: list[Call], seconds: float) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(port, calls, seed, until, tally)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    assert not any(thread.is_alive() for thread in threads), "a client hung past the soak's time bound"
    return tally


def resident_bytes(running: Running) -> int:
    """Resident memory of the container's processes (the supervisor and its workers), from the host's /proc."""
    running.container.reload()
    return int(memory_mb(running.container.attrs["State"]["Pid"])["rss_sum_mb"] * 2**20)  # MiB to bytes


def wait_for_every_worker(running: Running, timeout: float = 30.0) -> None:
    """The first worker serves before the others have loaded; keep-alive clients that connect then all stay
    on it, and the warm-up would warm one worker only."""
    workers = budget().count  # the image's default: one per CPU it may use, here all of the host's
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = running.container.logs().decode().splitlines()
        if sum(json.loads(line)["message"].startswith("model ") for line in lines if line.startswith("{")) == workers:
            return
        time.sleep(0.1)
    pytest.fail(f"not every worker started within {timeout} s")


@pytest.fixture()
def soaked(request, docker_client, image) -> Iterator[Running]:
    environment = {f"SERVICE_{key}": str(value) for key, value in LIMITS.items()}
    with run_container(docker_client, image["image"], request, environment) as running:
        wait_for_every_worker(running)
        yield running


def test_soak_mixed_traffic_32_clients(soaked):
    calls = traffic()
    warm = run_clients(soaked.port, calls, WARM_UP_SECONDS)
    assert warm.unexpected == [], warm.unexpected
    before = resident_bytes(soaked)
    soak = run_clients(soaked.port, calls, SOAK_SECONDS)
    after = resident_bytes(soaked)

    growth = (after - before) / before
    assert len(process_tree(soaked.container.attrs["State"]["Pid"])) > 1, "expected the supervisor and its workers"
    print(f"\nsoak: {soak.sent} requests from {CLIENTS} clients in {SOAK_SECONDS:.0f} s; "
          f"RSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB ({growth:+.1%})")
    assert soak.unexpected == [], soak.unexpected
    assert soak.sent > 1000, "the soak sent too little traffic to mean anything"
    assert growth < MAX_RSS_GROWTH
