"""`python -m service predict`: a file scored offline in chunks, exactly as model.predict, every row answered in
order; a row that cannot be scored is named with its row number and costs only itself."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from service import batch
from service.app import create_app
from service.state import EXTENSION

from .conftest import BUNDLES, ROOT

NAMES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def model():
    return create_app({"MODEL_DIR": str(BUNDLES["diabetes"])}).extensions[EXTENSION].bundle.model


def rows(count: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    low, high = np.array([19, 1, 18, 62, 97, 41.6, 22, 2, 3.2581, 58]), np.array([79, 2, 42.2, 133, 301, 242.4,
                                                                                  99, 9.09, 6.107, 124])
    return np.round(low + rng.uniform(size=(count, 10)) * (high - low), 4)


def csv_of(values: np.ndarray, header: bool) -> str:
    lines = ([",".join(NAMES)] if header else []) + [",".join(repr(float(v)) for v in row) for row in values]
    return "\n".join(lines) + "\n"


def score(text: str, input_format: str, output_format: str | None = None, chunk_rows: int = 7) -> tuple[int, str, str]:
    sink, log = io.StringIO(), io.StringIO()
    code = batch.run(io.StringIO(text), sink, log, input_format, output_format or input_format, chunk_rows)
    return code, sink.getvalue(), log.getvalue()


@pytest.mark.parametrize("header", [True, False])
def test_csv_in_chunks_answers_every_row_exactly_in_order(model, monkeypatch, header):
    monkeypatch.setenv("MODEL_DIR", str(BUNDLES["diabetes"]))
    values = rows(50)  # 8 chunks of 7 rows, the last one short
    code, out, log = score(csv_of(values, header), "csv")
    assert code == 0 and "predict: 50 rows in" in log
    assert [float(line) for line in out.splitlines()] == model.predict(values).tolist()


def test_json_lines_of_records_and_rows(model, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(BUNDLES["diabetes"]))
    values = rows(10)
    lines = [json.dumps(dict(zip(NAMES, map(float, row), strict=True))) if i % 2 else json.dumps(list(map(float, row)))
             for i, row in enumerate(values)]
    code, out, _ = score("\n".join(lines) + "\n", "jsonl")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == model.predict(values).tolist()
    code, out, _ = score("\n".join(lines) + "\n", "jsonl", "csv")
    assert code == 0 and [float(line) for line in out.splitlines()] == model.predict(values).tolist()


def test_bad_rows_are_named_cost_only_themselves_and_set_the_exit_code(model, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(BUNDLES["diabetes"]))
    values = rows(20)
    lines = csv_of(values, header=True).splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "abc", 1)  # row 3 (the header is line 1)
    lines[12] = "1,2"  # row 12
    code, out, log = score("\n".join(lines) + "\n", "csv")
    answers = out.splitlines()
    assert code == 1 and len(answers) == 20 and answers[2] == "" and answers[11] == ""
    good = [i for i in range(20) if i not in (2, 11)]
    assert [float(answers[i]) for i in good] == model.predict(values[good]).tolist()
    assert "predict: row 3: feature 'bmi' must be a finite number, got a string" in log
    assert "predict: row 12: CSV line 13: 2 values, the model takes 10" in log
    assert log.splitlines()[-1] == "error: 2 of 20 rows could not be scored (empty lines in the output; the first " \
                                   "2 are listed above)"


def test_the_command_reads_stdin_and_writes_stdout(model):
    values = rows(30)
    result = subprocess.run([sys.executable, "-m", "service", "predict"], input=csv_of(values, header=True),
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={"MODEL_DIR": str(BUNDLES["diabetes"]), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert [float(line) for line in result.stdout.splitlines()] == model.predict(values).tolist()
    assert all(not line.startswith("{") for line in result.stderr.splitlines())  # no JSON logs: progress only
