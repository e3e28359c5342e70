"""`--prune`: keep only what this bundle's service uses, found by running it. Runs in the builder (app stage).

    /opt/venv/bin/python3 build/prune.py OUT

Starts the real service (`python -m service`, two workers, the image's settings) with a trace in every process
(the files Python opens, the modules it imports, the shared libraries mapped), waits until it is ready, calls every
route: each GET, /docs and its assets, the examples on /predict (plain and gzip), the V2 infer route, the errors
(bad JSON, a wrong value, an unknown route, a wrong method, a body over the limit), then /metrics, runs the image's
health check (`python -m service.healthcheck`, traced too), and stops the service with SIGTERM. Then writes
OUT/venv (the venv with only the traced files, every *.dist-info but its RECORD, which would list files no longer
there, and the symlinks to kept libraries), OUT/stdlib (the standard library's bytecode the trace reached), and
OUT/venv/pruned.json: what was left out, per package, in bytes. A module no trace reached is then missing: an
estimator that imports `sklearn.impute` only when predicting something it never saw while tracing fails with
"No module named ...". That is the price of --prune, which is why it is opt-in.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from collections.abc import Callable

VENV = Path("/opt/venv")
STDLIB_STAGING = Path("/staging/stdlib")
STDLIB = Path("/usr/lib/python3.13")
STALE_METADATA = ("RECORD", "INSTALLER", "REQUESTED")  # pip's inventory of files, most of them gone

TRACE_HOOK = '''
import json, os, sys
_opened = set()
def _audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        _opened.add(os.fsdecode(args[0]))
sys.addaudithook(_audit)
def _dump():
    with open("/proc/self/maps") as maps:
        mapped = {line.split(None, 5)[-1].strip() for line in maps if "/" in line}
    modules = {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
    folder = os.environ["PRUNE_TRACE"]
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
        json.dump(sorted(_opened | mapped | modules), out)
import atexit
atexit.register(_dump)
_exit = os._exit
def _traced_exit(code):
    _dump()
    _exit(code)
os._exit = _traced_exit
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
          method: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:  # a body over the limit: the answer is a 413 and a closed connection, the send may reset
        return 0, b""


def exercise(base: str) -> int:
    """Every route the service has, its examples and its errors; returns the number of calls."""
    from service.docs import ASSETS
    calls = 0
    json_headers = {"Content-Type": "application/json"}
    document = json.loads(_call(base + "/openapi.json")[1])
    card = json.loads(_call(base + "/metadata")[1])["card"]
    name, version = card["name"], card["version"]
    for path, operations in document["paths"].items():
        if "get" in operations:
            _call(base + path.replace("{name}", name).replace("{version}", version))
            calls += 1
    for asset in ("/docs", "/docs/init.js", *(f"/docs/{asset}" for asset in ASSETS), "/no-such-route"):
        _call(base + asset)
        calls += 1
    examples = json.loads(_call(base + "/examples")[1])["examples"]
    for example in examples:
        body = json.dumps(example["request"]).encode()
        _call(base + "/predict", body, json_headers)
        _call(base + "/predict", gzip.compress(body), {**json_headers, "Content-Encoding": "gzip"})
        calls += 2
    record = next(example["request"] for example in examples if isinstance(example["request"], dict))
    metadata = json.loads(_call(base + f"/v2/models/{name}")[1])
    inputs = [{"name": tensor["name"], "datatype": tensor["datatype"], "shape": [1], "data": [record[tensor["name"]]]}
              for tensor in metadata["inputs"] if tensor["name"] in record]
    for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{version}/infer"):
        _call(base + path, json.dumps({"inputs": inputs}).encode(), json_headers)
        calls += 1
    wrong = {key: "not a value" for key in record}
    for body in (b"{not json", json.dumps(wrong).encode(), b"[" + b"1," * 2_000_000 + b"1]"):
        _call(base + "/predict", body, json_headers)
        calls += 1
    _call(base + "/predict", method="GET")
    _call(base + "/metrics")
    return calls + 2


def trace(folder: Path) -> set[str]:
    """Run the service with the trace hook, exercise it, stop it; every path any of its processes used."""
    hook = folder / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(TRACE_HOOK, encoding="utf-8")
    port = _free_port()
    environment = {**os.environ, "PRUNE_TRACE": str(folder), "SERVICE_HOST": "127.0.0.1",
                   "SERVICE_PORT": str(port), "SERVICE_WORKERS": "2",
                   "PYTHONPATH": f"{hook}:{os.environ.get('PYTHONPATH', '')}"}
    service = subprocess.Popen([str(VENV / "bin/python3"), "-m", "service"], env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _call(base + "/health/ready")[0] != 200:
            if service.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: --prune: the service did not start for tracing (exit {service.poll()})")
            time.sleep(0.2)
        calls = exercise(base)
        healthcheck = subprocess.run([str(VENV / "bin/python3"), "-m", "service.healthcheck"], env=environment)
        if healthcheck.returncode != 0:
            raise SystemExit("error: --prune: the health check failed while tracing")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    used: set[str] = set()
    for dump in folder.glob("*.json"):
        used.update(json.loads(dump.read_text(encoding="utf-8")))
    print(f"prune: traced {len(list(folder.glob('*.json')))} processes over {calls} calls")
    return used


def keep_venv(used: set[str], site: Path) -> set[Path]:
    """The site-packages files to keep: traced ones (and their real paths), every dist-info, symlinks to kept."""
    kept = set()
    for name in used:
        path = Path(name)
        if site in path.parents:
            kept.add(path)
            kept.add(path.resolve())
    for path in site.rglob("*"):
        if path.parent.name.endswith(".dist-info") and path.name in STALE_METADATA:
            continue
        if any(part.endswith(".dist-info") for part in path.relative_to(site).parts):
            kept.add(path)
    for path in site.rglob("*"):
        if path.is_symlink() and path.resolve() in kept:
            kept.add(path)
    return kept


def copy_kept(source: Path, target: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Copy source to target but the files keep() refuses; returns those."""
    left_out = []
    for path in sorted(source.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        if not keep(path):
            left_out.append(path)
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            destination.symlink_to(os.readlink(path))
        else:
            shutil.copy2(path, destination)
    return left_out


def summary(site: Path, venv_left: list[Path], stdlib_left: list[Path]) -> dict[str, Any]:
    """What was left out: files, bytes, bytes per installed package (numpy.libs counts as numpy)."""
    packages: dict[str, int] = {}
    for path in venv_left:
        if path.is_symlink():
            continue
        top = re.sub(r"(\.libs|-[^-]+\.dist-info|\.pyc|\.cpython-[^/]*\.so)$", "", path.relative_to(site).parts[0])
        packages[top] = packages.get(top, 0) + path.stat().st_size
    stdlib = sum(path.stat().st_size for path in stdlib_left if not path.is_symlink())
    return {"files": len(venv_left) + len(stdlib_left), "bytes": sum(packages.values()) + stdlib,
            "standard_library": stdlib, "packages": dict(sorted(packages.items(), key=lambda item: -item[1]))}


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    site = next(VENV.glob("lib/python3.*/site-packages"))
    with tempfile.TemporaryDirectory(prefix="prune-trace-") as temporary:
        used = trace(Path(temporary))
    kept = keep_venv(used, site)
    venv_left = copy_kept(VENV, out / "venv", lambda path: site not in path.parents or path in kept)
    reached = {str(Path(name).with_suffix(".pyc")) for name in used if name.startswith(f"{STDLIB}/")}
    stdlib_left = copy_kept(STDLIB_STAGING, out / "stdlib",
                            lambda path: "/" + path.relative_to(STDLIB_STAGING).as_posix() in reached)
    left = summary(site, venv_left, stdlib_left)
    (out / "venv" / "pruned.json").write_text(json.dumps(left, indent=1) + "\n", encoding="utf-8")
    print(f"prune: left out {left['files']} files, {left['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
