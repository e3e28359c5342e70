"""`python scripts/bench.py`: every server side by side, on one machine, the same model artifacts, one load
generator, in interleaved rounds.

The default model: this project's image (its /predict, its V2, MLflow and KServe V1 routes, and a no-op
GET /health/live as the server's own ceiling); the service started from source; MLServer with its scikit-learn
runtime (a sweep of its parallel workers and adaptive batching first, then the best of them); the book-style
baseline. A bring-your-own model (a DataFrame pipeline with text columns): its own image from `scripts/build.py
--model --sample`, and MLServer (the same sweep) on the same file.

All servers of a model run at once and are loaded in turn, round after round (`benchmark/rounds.py`); each figure
is the median of its rounds, with the spread, and the CPU per request read from the server's cgroup. This image
and MLServer also get requests of 100 and 1,000 rows (rows per second). Progress goes to stderr; stdout gets the
markdown tables; JSON, markdown and two PNGs go to --out.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from imagebuild import ROOT, BuildError
from imagebuild import cli as build_cli
from imagebuild.http_calls import free_port
from imagebuild.progress import say
from imagebuild.requirements import pinned

from . import load, mlserver_env, report, rounds
from .houses import forest_on_strings
from .targets import Route, Server, TargetError, memory_mb, post, start_container, start_process

MODEL_DIR = ROOT / "models" / "diabetes"
CACHE = ROOT / ".cache" / "bench"
RECORD = {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157, "s2": 93.2, "s3": 38, "s4": 4, "s5": 4.8598,
          "s6": 87}
HOUSE = {"city": "paris", "area": 72.5, "rooms": 3, "garden": False}
BYO_TAG = "byo-bench-houses:latest"
BYO_BUDGET_MB = "300"  # its own image: pandas and a forest; the default budget is the default model's
WARM_UP_SECONDS = 2  # each route's warm-up load before the rounds; no longer than one run (--seconds)
# After the first prediction a server may still be starting workers (this image's first worker serves while the
# others load); wrk's keep-alive connections opened before they are up would all stay on the first one.
SETTLE_SECONDS = 3
FOCUS = 32  # the goals are measured at 32 connections
# MLServer settings tried: in-process inference, then 1 and 2 inference workers, each without and with adaptive
# batching (its documented knobs, https://mlserver.readthedocs.io: parallel_workers, max_batch_size, max_batch_time).
MLSERVER_SWEEP = [(workers, batch) for workers in (0, 1, 2) for batch in ((1, 0.0), (32, 0.002))]
MLSERVER = "MLServer 1.7.1"
V2_TYPES = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}


@dataclass
class Subject:
    """A model under test: its file, the one-row request every server gets, and what model.predict answers."""

    key: str  # the model's name at MLServer, and in the reports
    title: str
    model_file: Path
    record: dict[str, Any]
    expected: float
    build_args: list[str]
    dataframe: bool  # MLServer gets the columns with its pandas codec

    def records(self, rows: int) -> bytes:
        """This project's body: the record, or a list of `rows` copies of it."""
        return json.dumps(self.record if rows == 1 else [self.record] * rows).encode()

    def v2_body(self, rows: int = 1) -> bytes:
        """The V2 request MLServer's scikit-learn runtime takes: one tensor of the rows, or one tensor per column."""
        if not self.dataframe:
            data = list(self.record.values()) * rows
            return json.dumps({"inputs": [{"name": "input-0", "shape": [rows, len(self.record)], "datatype": "FP64",
                                           "data": data}]}).encode()
        inputs = [{"name": name, "shape": [rows], "datatype": V2_TYPES[type(value)], "data": [value] * rows,
                   **({"parameters": {"content_type": "str"}} if isinstance(value, str) else {})}
                  for name, value in self.record.items()]
        return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def default_subject() -> Subject:
    card = json.loads((MODEL_DIR / "card.json").read_text())
    record = {feature["name"]: RECORD[feature["name"]] for feature in card["features"]}
    model = joblib.load(MODEL_DIR / "model.joblib")
    expected = float(model.predict(np.array([list(record.values())], dtype=float))[0])
    return Subject("diabetes", "default model: scaler + 300-tree gradient boosting, NumPy array",
                   MODEL_DIR / "model.joblib", record, expected, [], dataframe=False)


def byo_subject() -> Subject:
    """A model as users bring it (benchmark/houses.py, also in the tests): a ColumnTransformer (imputers, a one-hot
    encoder on a text column) and a random forest, fitted on a DataFrame with text and missing values; built with
    --sample."""
    import pandas as pd
    model, sample, _ = forest_on_strings()
    folder = CACHE / "houses"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    sample.to_csv(folder / "sample.csv", index=False)
    expected = float(model.predict(pd.DataFrame([HOUSE]))[0])
    return Subject("houses", "bring-your-own: ColumnTransformer + 40-tree random forest, DataFrame with text",
                   folder / "model.joblib", HOUSE, expected,
                   ["--model", str(folder / "model.joblib"), "--sample", str(folder / "sample.csv"),
                    "--tag", BYO_TAG, "--size-budget", BYO_BUDGET_MB], dataframe=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each load run (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds through all servers; each figure is their median (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64],
                        help="open connections per run (default 1 8 32 64)")
    parser.add_argument("--rows", type=int, nargs="+", default=[100, 1000],
                        help=f"rows per request of the batch runs, at {FOCUS} connections (default 100 1000)")
    parser.add_argument("--sweep-seconds", type=int, default=5,
                        help="length of each MLServer configuration's run in the sweep (default 5)")
    parser.add_argument("--sweep-configurations", type=int, default=len(MLSERVER_SWEEP),
                        choices=range(1, len(MLSERVER_SWEEP) + 1), metavar=f"1-{len(MLSERVER_SWEEP)}",
                        help="how many of MLServer's configurations the sweep tries, in order (default all)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench",
                        help="path stem of the reports: .json, .md, .png (default reports/bench)")
    return parser.parse_args(argv)


def check(server: Server, route: Route, subject: Subject) -> dict[str, Any]:
    """The route's answer against the model: every row answered as model.predict answers the record."""
    if route.prediction is None:
        return {}
    status, answer = post(server.url + route.path, route.body)
    got = route.prediction(answer) if status == 200 else None
    identical = got == [subject.expected] * route.rows
    if not identical:
        say(f"warning: {server.name} {route.label} answered {str(got)[:200]}, the model gives {subject.expected}")
    return {"prediction": got[0] if got else None, "identical_to_model": identical}


def our_image(subject: Subject, with_all_routes: bool, rows: list[int]) -> Server:
    """This image for `subject`: /predict (also with `rows` rows), and for the default model also its V2, MLflow
    and KServe V1 routes and the no-op route."""
    import docker
    report_path = CACHE / f"build-report-{subject.key}.json"
    say(f"building the image for {subject.key} (scripts/build.py; cached layers make this quick)")
    with contextlib.redirect_stdout(sys.stderr):
        if build_cli.main(["--report", str(report_path), *subject.build_args]) != 0:
            raise BuildError("scripts/build.py failed; see above")
    built = json.loads(report_path.read_text())
    routes = [Route("POST /predict", "/predict", subject.records(1), lambda a: a["predictions"])]
    if with_all_routes:
        name = json.loads((MODEL_DIR / "card.json").read_text())["name"]
        routes += [Route("POST /v2/.../infer", f"/v2/models/{name}/infer", subject.v2_body(),
                         lambda a: a["outputs"][0]["data"]),
                   Route("POST /invocations", "/invocations", subject.records(1), lambda a: a["predictions"]),
                   Route("POST /v1/...:predict", f"/v1/models/{name}:predict",
                         json.dumps({"instances": [subject.record]}).encode(), lambda a: a["predictions"]),
                   Route("GET /health/live (no-op)", "/health/live", None)]
    routes += [Route("POST /predict", "/predict", subject.records(n), lambda a: a["predictions"], rows=n) for n in rows]
    if with_all_routes:  # the very body MLServer gets
        routes += [Route("POST /v2/.../infer", f"/v2/models/{name}/infer", subject.v2_body(n),
                         lambda a: a["outputs"][0]["data"], rows=n) for n in rows]
    server = start_container(docker.from_env(timeout=600), built["image"], "this image", routes)
    server.image = f"{built['size'] / 1e6:.0f} MB ({built['compressed_size'] / 1e6:.0f} MB gzip)"
    return server


def from_source(subject: Subject) -> Server:
    port = free_port()
    route = Route("POST /predict", "/predict", subject.records(1), lambda a: a["predictions"])
    return start_process("from source", [sys.executable, "-m", "service"],
                         {"SERVICE_PORT": str(port), "MODEL_DIR": str(MODEL_DIR)}, port, [route],
                         CACHE / "logs" / "source.log", cwd=ROOT)


MLSERVER_MODELS = CACHE / "mlserver-models"


def start_mlserver(command: Path, subject: Subject, workers: int, batch: tuple[int, float],
                   rows: list[int]) -> Server:
    """MLServer on the model folder mlserver_sweep() prepared for `subject`, with these settings."""
    folder = MLSERVER_MODELS / subject.key
    port, grpc, metrics = free_port(), free_port(), free_port()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": grpc, "metrics_port": metrics,
        "parallel_workers": workers}))
    (folder / subject.key / "model-settings.json").write_text(json.dumps({
        "name": subject.key, "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": batch[0], "max_batch_time": batch[1],
        "parameters": {"uri": "./model.joblib", "version": "1.0.0"}}))
    routes = [Route("POST /v2/.../infer", f"/v2/models/{subject.key}/infer", subject.v2_body(n),
                    lambda a: a["outputs"][0]["data"], rows=n) for n in [1, *rows]]
    server = start_process(MLSERVER, [str(command), "start", str(folder)], {}, port, routes,
                           CACHE / "logs" / f"mlserver-{subject.key}.log",
                           cwd=folder)  # its metrics folder, .metrics, goes in its working directory
    server.notes.append(f"parallel_workers={workers}, max_batch_size={batch[0]}, max_batch_time={batch[1]}")
    server.image = "no image here (no registry); published image about 0.93 GB"
    return server


def mlserver_sweep(args: argparse.Namespace, subject: Subject) -> tuple[Path, list[dict[str, Any]]]:
    """MLServer's command, and its configurations tried on `subject` one after another, a short run each at 32
    connections: only to choose the one the rounds then measure beside the others."""
    say("MLServer: preparing its virtual environment (.cache/bench/mlserver-venv)")
    command = mlserver_env.ensure(CACHE / "mlserver-venv", pinned(ROOT / "requirements.txt"))
    (MLSERVER_MODELS / subject.key / subject.key).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(subject.model_file, MLSERVER_MODELS / subject.key / subject.key / "model.joblib")
    tried = []
    for workers, batch in MLSERVER_SWEEP[:args.sweep_configurations]:
        server = start_mlserver(command, subject, workers, batch, [])
        try:
            result = load.run(server.url + server.routes[0].path, server.routes[0].body, FOCUS, args.sweep_seconds)
        finally:
            server.stop()
        tried.append({"model": subject.key, "parallel_workers": workers, "max_batch_size": batch[0],
                      "max_batch_time": batch[1], **result.as_dict()})
        say(f"{subject.key}: MLServer parallel_workers={workers} batch={batch}: "
            f"{result.requests_per_second:,.0f} req/s, {result.errors} errors")
    return command, tried


def book(subject: Subject) -> Server:
    port = free_port()
    route = Route("POST /predict", "/predict", subject.records(1), lambda a: a["prediction"])
    server = start_process("book-style Flask", [sys.executable, str(ROOT / "benchmark" / "book_app.py"),
                                                str(MODEL_DIR), str(port)], {}, port, [route],
                           CACHE / "logs" / "book.log")
    server.image = "book: 1.15 GB; student: about 680 MB"
    return server


def start_servers(args: argparse.Namespace, subject: Subject, default: bool,
                  stack: contextlib.ExitStack) -> tuple[list[Server], list[dict[str, Any]]]:
    """Every server of `subject`, started (and stopped by `stack`), and MLServer's sweep."""
    command, tried = mlserver_sweep(args, subject)
    best = max((t for t in tried if t["errors"] == 0), key=lambda t: t["requests_per_second"], default=tried[0])
    starters = [lambda: our_image(subject, default, args.rows)]
    if default:
        starters.append(lambda: from_source(subject))
    starters.append(lambda: start_mlserver(command, subject, best["parallel_workers"],
                                           (best["max_batch_size"], best["max_batch_time"]), args.rows))
    if default:
        starters.append(lambda: book(subject))
    servers = []
    for start in starters:
        server = start()
        stack.callback(server.stop)
        servers.append(server)
    return servers, tried


def bench(args: argparse.Namespace, subject: Subject, default: bool) -> tuple[list[dict[str, Any]], list]:
    """All servers of `subject` at once, each route checked against the model, then loaded in interleaved rounds."""
    with contextlib.ExitStack() as stack:
        servers, tried = start_servers(args, subject, default, stack)
        time.sleep(SETTLE_SECONDS)
        targets, checks = [], []
        for server in servers:
            for route in server.routes:
                checks.append(check(server, route, subject))
                load.run(server.url + route.path, route.body, 8, min(WARM_UP_SECONDS, args.seconds))
                levels = tuple(args.concurrency) if route.rows == 1 else (FOCUS,)
                targets.append(rounds.Target(server, route, levels))
        samples = rounds.interleave(targets, args.rounds, args.seconds, say)
        memory = {server.name: memory_mb(server.root_pid()) for server in servers}
    return [{"model": subject.key, "server": target.server.name, "route": target.route.label,
             "rows": target.route.rows, **checked,
             "loads": [rounds.summarize(by_level[c], target.route.rows) for c in target.concurrency],
             "memory": memory[target.server.name], "cold_start_s": round(target.server.cold_start_s, 2),
             "image": target.server.image, "notes": target.server.notes}
            for target, checked, by_level in zip(targets, checks, samples, strict=True)], tried


def goals(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 28's goals, from the medians of the interleaved rounds at 32 connections."""
    def at(model: str, server: str, route: str, rows: int = 1) -> dict[str, Any]:
        run = next(r for r in runs if (r["model"], r["server"], r["route"], r["rows"]) == (model, server, route, rows))
        return next(load for load in run["loads"] if load["concurrency"] == FOCUS)

    ours = at("diabetes", "this image", "POST /predict")
    noop = at("diabetes", "this image", "GET /health/live (no-op)")
    mlserver = at("diabetes", MLSERVER, "POST /v2/.../infer")
    speedup = ours["requests_per_second"] / mlserver["requests_per_second"]
    share = ours["requests_per_second"] / noop["requests_per_second"]
    tail = ours["p99_ms"] / noop["p99_ms"] if ours["p99_ms"] and noop["p99_ms"] else float("inf")
    byo_speedup = (at("houses", "this image", "POST /predict")["requests_per_second"]
                   / at("houses", MLSERVER, "POST /v2/.../infer")["requests_per_second"])
    cold = next(r for r in runs if r["server"] == "this image")["cold_start_s"]
    platform = min(at("diabetes", "this image", route)["requests_per_second"]
                   for route in ("POST /invocations", "POST /v1/...:predict")) / ours["requests_per_second"]
    found = [
        {"goal": "/predict at least 2.5x MLServer's best", "measured": f"{speedup:.2f}x", "met": speedup >= 2.5},
        {"goal": "/predict at least 50% of the no-op route", "measured": f"{share:.0%}", "met": share >= 0.5},
        {"goal": "/predict's p99 at most 1.5x the no-op route's", "measured": f"{tail:.2f}x", "met": tail <= 1.5},
    ]
    batch = max((r["rows"] for r in runs if r["model"] == "diabetes" and r["server"] == MLSERVER), default=1)
    if batch > 1:
        theirs = at("diabetes", MLSERVER, "POST /v2/.../infer", batch)["rows_per_second"]
        for route, goal in (("POST /predict", f"{batch:,}-row requests: at least 2x MLServer's rows per second"),
                            ("POST /v2/.../infer", f"{batch:,}-row requests, V2 infer with MLServer's own body: "
                                                   f"at least 2x its rows per second")):
            ratio = at("diabetes", "this image", route, batch)["rows_per_second"] / theirs
            found.append({"goal": goal, "measured": f"{ratio:.2f}x", "met": ratio >= 2})
    return [*found,
            {"goal": "second model (bring-your-own DataFrame pipeline): at least 2x MLServer's best",
             "measured": f"{byo_speedup:.2f}x", "met": byo_speedup >= 2},
            {"goal": "cold start at most 2 s (container start to first prediction)", "measured": f"{cold:.2f} s",
             "met": cold <= 2},
            {"goal": "/invocations and KServe V1 within 10% of /predict (the slower of the two)",
             "measured": f"{platform:.0%}", "met": platform >= 0.9}]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if FOCUS not in args.concurrency:
        print(f"error: --concurrency must include {FOCUS} (the goals are measured there)", file=sys.stderr)
        return 2
    default, byo = default_subject(), byo_subject()
    try:
        runs, tried = bench(args, default, default=True)
        byo_runs, byo_tried = bench(args, byo, default=False)
    except (BuildError, TargetError, load.LoadError, mlserver_env.SetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    results = {
        "models": {subject.key: f"{subject.title} ({subject.model_file.relative_to(ROOT)})"
                   for subject in (default, byo)},
        "cpus": len(os.sched_getaffinity(0)), "seconds": args.seconds, "rounds": args.rounds,
        "concurrency": args.concurrency, "load_generator": "wrk 4.1.0 (Debian), keep-alive, loopback",
        "runs": runs + byo_runs, "mlserver_configurations": tried + byo_tried, "goals": goals(runs + byo_runs),
        "notes": [
            "Every server answers the same request; each answer was checked against model.predict.",
            "All servers of a model run at once and are loaded in turn, round after round: every figure is the "
            "median of the rounds; the spread is the lowest and highest round.",
            "CPU per request: the CPU time the server's cgroup spent during the run, over the requests it answered "
            "(the load generator is not in it).",
            "MLServer's configurations are swept one after another at 32 connections, only to choose the one "
            "measured in the rounds.",
            "The load generator runs on the same CPUs as the servers, as a client on the same host would.",
            "Memory: PSS of the server's processes after the last round (shared pages split).",
            "Cold start: from `docker run` (or process start) to the first successful prediction.",
            "Latency percentiles come from wrk's own histogram (its done() callback), in milliseconds.",
        ],
    }
    paths = report.write(results, args.out)
    say(f"reports: {', '.join(str(path) for path in paths.values())}")
    sys.stdout.write(report.markdown(results))
    return 0
