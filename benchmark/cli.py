"""`python scripts/bench.py`: every server side by side, on one machine, the same model artifacts, one load
generator.

The default model: this project's image (its /predict, its V2 route, and a no-op GET /health/live as the server's
own ceiling); the service started from source; MLServer with its scikit-learn runtime (a sweep of its parallel
workers and adaptive batching first, then the best of them); the book-style baseline. A bring-your-own model (a
DataFrame pipeline with text columns): its own image from `scripts/build.py --model --sample`, and MLServer (the
same sweep) on the same file. Progress goes to stderr; stdout gets the markdown tables; JSON, markdown and two
PNGs (throughput and tail latency by concurrency; latency against throughput) go to --out.
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
from imagebuild.progress import say
from imagebuild.http_calls import free_port
from imagebuild.requirements import pinned

from . import load, mlserver_env, report
from .houses import forest_on_strings
from .targets import Route, Server, TargetError, memory_mb, post, start_container, start_process

MODEL_DIR = ROOT / "models" / "diabetes"
CACHE = ROOT / ".cache" / "bench"
RECORD = {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157, "s2": 93.2, "s3": 38, "s4": 4, "s5": 4.8598,
          "s6": 87}
HOUSE = {"city": "paris", "area": 72.5, "rooms": 3, "garden": False}
BYO_TAG = "byo-bench-houses:latest"
BYO_BUDGET_MB = "300"  # its own image: pandas and a forest; the default budget is the default model's
WARM_UP_SECONDS = 2
# After the first prediction a server may still be starting workers (this image's first worker serves while the
# others load); wrk's keep-alive connections opened before they are up would all stay on the first one.
SETTLE_SECONDS = 3
# MLServer settings tried: in-process inference, then 1 and 2 inference workers, each without and with adaptive
# batching (its documented knobs, https://mlserver.readthedocs.io: parallel_workers, max_batch_size, max_batch_time).
MLSERVER_SWEEP = [(workers, batch) for workers in (0, 1, 2) for batch in ((1, 0.0), (32, 0.002))]
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

    def v2_body(self) -> bytes:
        """The V2 request MLServer's scikit-learn runtime takes: one tensor of the row, or one tensor per column."""
        if not self.dataframe:
            data = list(self.record.values())
            return json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(data)], "datatype": "FP64",
                                           "data": data}]}).encode()
        inputs = [{"name": name, "shape": [1], "datatype": V2_TYPES[type(value)], "data": [value],
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
    """A model as users bring it (benchmark/houses.py, also in the tests): a ColumnTransformer (imputers, a one-hot encoder on a
    text column) and a random forest, fitted on a DataFrame with text and missing values; built with --sample."""
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
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run (default 10)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64],
                        help="open connections per run (default 1 8 32 64)")
    parser.add_argument("--sweep-seconds", type=int, default=5,
                        help="length of each MLServer configuration's run in the sweep (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench",
                        help="path stem of the reports: .json, .md, .png (default reports/bench)")
    return parser.parse_args(argv)


def measure(server: Server, route: Route, args: argparse.Namespace, subject: Subject) -> dict[str, Any]:
    """Check the route's answer against the model, then load it at each concurrency."""
    run: dict[str, Any] = {"model": subject.key, "server": server.name, "route": route.label}
    if route.prediction is not None:
        status, answer = post(server.url + route.path, route.body)
        got = route.prediction(answer) if status == 200 else None
        run["prediction"], run["identical_to_model"] = got, got == subject.expected
        if got != subject.expected:
            say(f"warning: {server.name} answered {got}, the model gives {subject.expected}")
    time.sleep(SETTLE_SECONDS)
    load.run(server.url + route.path, route.body, 8, WARM_UP_SECONDS)
    run["loads"] = []
    for concurrency in args.concurrency:
        result = load.run(server.url + route.path, route.body, concurrency, args.seconds)
        say(f"{subject.key}: {server.name} {route.label} c={concurrency}: {result.requests_per_second:,.0f} req/s, "
            f"p99 {report.ms(result.p99_ms)} ms, p99.9 {report.ms(result.p999_ms)} ms, {result.errors} errors")
        run["loads"].append(result.as_dict())
    return run


def finish(server: Server, runs: list[dict[str, Any]], image: str | None = None) -> list[dict[str, Any]]:
    """Memory after the heaviest load, the cold start; then stop the server."""
    try:
        memory = memory_mb(server.root_pid())
    finally:
        server.stop()
    for run in runs:
        run.update(memory=memory, cold_start_s=round(server.cold_start_s, 2), image=image or "-", notes=server.notes)
    return runs


def our_image(args: argparse.Namespace, subject: Subject, with_all_routes: bool) -> list[dict[str, Any]]:
    """This image for `subject`: /predict, and for the default model also its V2 route and the no-op route."""
    import docker
    report_path = CACHE / f"build-report-{subject.key}.json"
    say(f"building the image for {subject.key} (scripts/build.py; cached layers make this quick)")
    with contextlib.redirect_stdout(sys.stderr):
        if build_cli.main(["--report", str(report_path), *subject.build_args]) != 0:
            raise BuildError("scripts/build.py failed; see above")
    built = json.loads(report_path.read_text())
    client = docker.from_env(timeout=600)
    routes = [Route("POST /predict", "/predict", json.dumps(subject.record).encode(),
                    lambda a: a["predictions"][0])]
    if with_all_routes:
        name = json.loads((MODEL_DIR / "card.json").read_text())["name"]
        routes += [Route("POST /v2/.../infer", f"/v2/models/{name}/infer", subject.v2_body(),
                         lambda a: a["outputs"][0]["data"][0]),
                   Route("POST /invocations", "/invocations", json.dumps(subject.record).encode(),
                         lambda a: a["predictions"][0]),
                   Route("POST /v1/...:predict", f"/v1/models/{name}:predict",
                         json.dumps({"instances": [subject.record]}).encode(), lambda a: a["predictions"][0]),
                   Route("GET /health/live (no-op)", "/health/live", None)]
    server = start_container(client, built["image"], "this image", routes)
    size = f"{built['size'] / 1e6:.0f} MB ({built['compressed_size'] / 1e6:.0f} MB gzip)"
    runs = [measure(server, route, args, subject) for route in routes]
    return finish(server, runs, size)


def from_source(args: argparse.Namespace, subject: Subject) -> list[dict[str, Any]]:
    port = free_port()
    route = Route("POST /predict", "/predict", json.dumps(subject.record).encode(), lambda a: a["predictions"][0])
    server = start_process("from source", [sys.executable, "-m", "service"],
                           {"SERVICE_PORT": str(port), "MODEL_DIR": str(MODEL_DIR)}, port, [route],
                           CACHE / "logs" / "source.log", cwd=ROOT)
    return finish(server, [measure(server, route, args, subject)])


MLSERVER_MODELS = CACHE / "mlserver-models"


def start_mlserver(command: Path, subject: Subject, workers: int, batch: tuple[int, float]) -> Server:
    """MLServer on the model folder mlserver() prepared for `subject`, with these settings."""
    folder = MLSERVER_MODELS / subject.key
    port, grpc, metrics = free_port(), free_port(), free_port()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": grpc, "metrics_port": metrics,
        "parallel_workers": workers}))
    (folder / subject.key / "model-settings.json").write_text(json.dumps({
        "name": subject.key, "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": batch[0], "max_batch_time": batch[1],
        "parameters": {"uri": "./model.joblib", "version": "1.0.0"}}))
    route = Route("POST /v2/.../infer", f"/v2/models/{subject.key}/infer", subject.v2_body(),
                  lambda a: a["outputs"][0]["data"][0])
    return start_process("MLServer 1.7.1", [str(command), "start", str(folder)], {}, port, [route],
                         CACHE / "logs" / f"mlserver-{subject.key}.log")


def mlserver(args: argparse.Namespace, subject: Subject) -> tuple[list, list]:
    """MLServer's configurations tried on `subject` for a short run each, then its best one measured in full."""
    say("MLServer: preparing its virtual environment (.cache/bench/mlserver-venv)")
    command = mlserver_env.ensure(CACHE / "mlserver-venv", pinned(ROOT / "requirements.txt"))
    (MLSERVER_MODELS / subject.key / subject.key).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(subject.model_file, MLSERVER_MODELS / subject.key / subject.key / "model.joblib")
    tried = []
    for workers, batch in MLSERVER_SWEEP:
        server = start_mlserver(command, subject, workers, batch)
        try:
            result = load.run(server.url + server.routes[0].path, server.routes[0].body, 32, args.sweep_seconds)
        finally:
            server.stop()
        tried.append({"model": subject.key, "parallel_workers": workers, "max_batch_size": batch[0],
                      "max_batch_time": batch[1], **result.as_dict()})
        say(f"{subject.key}: MLServer parallel_workers={workers} batch={batch}: "
            f"{result.requests_per_second:,.0f} req/s, {result.errors} errors")
    best = max((t for t in tried if t["errors"] == 0), key=lambda t: t["requests_per_second"], default=tried[0])
    server = start_mlserver(command, subject, best["parallel_workers"], (best["max_batch_size"],
                                                                         best["max_batch_time"]))
    server.notes.append(f"parallel_workers={best['parallel_workers']}, max_batch_size={best['max_batch_size']}, "
                        f"max_batch_time={best['max_batch_time']}")
    runs = [measure(server, server.routes[0], args, subject)]
    return finish(server, runs, "no image here (no registry); published image about 0.93 GB"), tried


def book(args: argparse.Namespace, subject: Subject) -> list[dict[str, Any]]:
    port = free_port()
    route = Route("POST /predict", "/predict", json.dumps(subject.record).encode(), lambda a: a["prediction"][0])
    server = start_process("book-style Flask", [sys.executable, str(ROOT / "benchmark" / "book_app.py"),
                                                str(MODEL_DIR), str(port)], {}, port, [route],
                           CACHE / "logs" / "book.log")
    return finish(server, [measure(server, route, args, subject)], "book: 1.15 GB; student: about 680 MB")


def goals(runs: list[dict[str, Any]], tried: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals at 32 connections. MLServer's best is the most it did at 32 connections in this run:
    its measured best configuration, or any configuration of the sweep if that did more."""
    def at32(model: str, server: str, route: str) -> dict[str, Any]:
        run = next(r for r in runs if (r["model"], r["server"], r["route"]) == (model, server, route))
        return next(load for load in run["loads"] if load["concurrency"] == 32)

    def mlserver_best(model: str) -> float:
        swept = [t["requests_per_second"] for t in tried if t["model"] == model and t["errors"] == 0]
        return max([at32(model, "MLServer 1.7.1", "POST /v2/.../infer")["requests_per_second"], *swept])

    ours = at32("diabetes", "this image", "POST /predict")
    noop = at32("diabetes", "this image", "GET /health/live (no-op)")
    byo = at32("houses", "this image", "POST /predict")
    cold = next(r for r in runs if r["server"] == "this image")["cold_start_s"]
    speedup = ours["requests_per_second"] / mlserver_best("diabetes")
    share = ours["requests_per_second"] / noop["requests_per_second"]
    byo_speedup = byo["requests_per_second"] / mlserver_best("houses")
    platform = min(at32("diabetes", "this image", route)["requests_per_second"]
                   for route in ("POST /invocations", "POST /v1/...:predict")) / ours["requests_per_second"]
    return [
        {"goal": "/predict at least 3x MLServer's best", "measured": f"{speedup:.2f}x", "met": speedup >= 3},
        {"goal": "/predict at least 80% of the no-op route", "measured": f"{share:.0%}", "met": share >= 0.8},
        {"goal": "p99 at most 25 ms", "measured": f"{report.ms(ours['p99_ms'])} ms",
         "met": ours["p99_ms"] is not None and ours["p99_ms"] <= 25},
        {"goal": "second model (bring-your-own DataFrame pipeline): at least 2x MLServer's best",
         "measured": f"{byo_speedup:.2f}x", "met": byo_speedup >= 2},
        {"goal": "cold start at most 2 s (container start to first prediction)", "measured": f"{cold:.2f} s",
         "met": cold <= 2},
        {"goal": "/invocations and KServe V1 within 10% of /predict (the slower of the two)",
         "measured": f"{platform:.0%}", "met": platform >= 0.9},
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if 32 not in args.concurrency:
        print("error: --concurrency must include 32 (the goals are measured there)", file=sys.stderr)
        return 2
    default, byo = default_subject(), byo_subject()
    try:
        runs = our_image(args, default, with_all_routes=True)
        runs += from_source(args, default)
        mlserver_runs, tried = mlserver(args, default)
        runs += mlserver_runs
        runs += book(args, default)
        runs += our_image(args, byo, with_all_routes=False)
        mlserver_runs, byo_tried = mlserver(args, byo)
        runs += mlserver_runs
    except (BuildError, TargetError, load.LoadError, mlserver_env.SetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    results = {
        "models": {subject.key: f"{subject.title} ({subject.model_file.relative_to(ROOT)})"
                   for subject in (default, byo)},
        "cpus": len(os.sched_getaffinity(0)), "seconds": args.seconds, "concurrency": args.concurrency,
        "load_generator": "wrk 4.1.0 (Debian), keep-alive, loopback", "runs": runs,
        "mlserver_configurations": tried + byo_tried, "goals": goals(runs, tried + byo_tried),
        "notes": [
            "Every server answers the same one-row request; each answer was checked against model.predict.",
            "The load generator runs on the same CPUs as the servers, as a client on the same host would.",
            "Memory: PSS of the server's processes after the last load run (shared pages split).",
            "Cold start: from `docker run` (or process start) to the first successful prediction.",
            "Latency percentiles come from wrk's own histogram (its done() callback), in milliseconds.",
        ],
    }
    paths = report.write(results, args.out)
    say(f"reports: {', '.join(str(path) for path in paths.values())}")
    sys.stdout.write(report.markdown(results))
    return 0
