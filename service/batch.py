"""`python -m service predict` (in the image: `docker run -i --rm IMAGE predict < rows.csv > predictions.csv`):
score a file offline through the same typing, validation and prediction as /invocations (service/platforms.py),
CHUNK_ROWS rows at a time, so memory does not grow with the file.

In: CSV (a header naming the features, or rows in feature order) or JSON lines (a record, or a row in feature
order, per line), from stdin or --input. Out: one prediction per input row, in order, as CSV or JSON lines (the
input's format unless --output-format says otherwise), to stdout or --output. A row that cannot be scored gets an
empty CSV line (null in JSON lines) and a line on stderr with its row number and why; progress goes to stderr too.
The exit code is 0 when every row was scored, 1 when some were not (the last line says how many), 2 when the file
or the model cannot be read at all.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys
import time
from typing import IO, Any
from collections.abc import Iterator, Sequence

from modelcard.features import Feature, ValueProblem

from .errors import ApiError

CHUNK_ROWS = 10_000
REPORTED = 100  # failing rows listed on stderr; the rest are counted
PROGRESS_SECONDS = 5.0


class Scorer:
    """The model, loaded and checked as the server loads it, scoring chunks of rows."""

    def __init__(self, chunk_rows: int):
        from .app import create_app
        from .state import EXTENSION
        self.app = create_app({"MAX_ROWS": chunk_rows, "BATCH_MAX_ROWS": 0})
        self.features: Sequence[Feature] = self.app.extensions[EXTENSION].bundle.features

    def score(self, records: list[Any]) -> list[Any | ApiError]:
        """A prediction, or the error that refused it, for each record; rows are predicted together when all are
        good, else each alone (so one bad row costs only itself)."""
        from .platforms import predictions_for
        with self.app.app_context():
            try:
                return list(predictions_for(records))
            except (ApiError, ValueProblem):
                pass
            answers: list[Any | ApiError] = []
            for record in records:
                try:
                    answers.append(predictions_for([record])[0])
                except (ApiError, ValueProblem) as exc:
                    answers.append(exc if isinstance(exc, ApiError) else ApiError(422, exc.code, exc.message))
            return answers


def csv_chunks(stream: IO[str], features: Sequence[Feature], size: int) -> Iterator[tuple[int, list[Any]]]:
    """(first row number, records) for each `size` rows of CSV; a header, if any, names the columns."""
    from .platforms import header_of, typed_records
    reader = enumerate(csv.reader(stream), start=1)
    first = next(reader, None)
    header = header_of(first[1], features) if first else None
    order = header or [feature.name for feature in features]
    rows = reader if header else itertools.chain([first] if first else [], reader)
    number = 1
    while True:
        chunk = [(line, row) for line, row in itertools.islice(rows, size) if row]
        if not chunk:
            return
        try:
            yield number, typed_records(chunk, order, features, size)
        except ApiError:  # a row of the wrong length: each row alone says which
            yield number, [_typed_or_error(line, row, order, features) for line, row in chunk]
        number += len(chunk)


def _typed_or_error(line: int, row: list[str], order: list[str], features: Sequence[Feature]) -> Any:
    from .platforms import typed_records
    try:
        return typed_records([(line, row)], order, features, 1)[0]
    except ApiError as exc:
        return exc


def json_chunks(stream: IO[str], size: int) -> Iterator[tuple[int, list[Any]]]:
    """(first row number, records) for each `size` lines of JSON lines (a record, or a row in feature order)."""
    number = 1
    lines = (line for line in stream if line.strip())
    while True:
        chunk = list(itertools.islice(lines, size))
        if not chunk:
            return
        records = []
        for text in chunk:
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError as exc:
                records.append(ApiError(400, "invalid_json", f"malformed JSON: {exc.msg}"))
        yield number, records
        number += len(chunk)


def _as_records(records: list[Any], features: Sequence[Feature]) -> list[Any]:
    """Rows in feature order as records; everything else as it came."""
    names = [feature.name for feature in features]
    return [dict(zip(names, item, strict=True)) if isinstance(item, list) and len(item) == len(names) else item
            for item in records]


def run(source: IO[str], sink: IO[str], log: IO[str], input_format: str, output_format: str,
        chunk_rows: int = CHUNK_ROWS) -> int:
    """Score every row of `source` into `sink`; the exit code (see the module's docstring)."""
    scorer = Scorer(chunk_rows)
    chunks = csv_chunks(source, scorer.features, chunk_rows) if input_format == "csv" else \
        json_chunks(source, chunk_rows)
    writer = csv.writer(sink, lineterminator="\n")
    total = failed = 0
    started = reported_at = time.monotonic()
    for number, records in chunks:
        records = _as_records(records, scorer.features)
        good = [record for record in records if not isinstance(record, ApiError)]
        answers = iter(scorer.score(good) if good else [])
        for offset, record in enumerate(records):
            answer = record if isinstance(record, ApiError) else next(answers)
            if isinstance(answer, ApiError):
                failed += 1
                if failed <= REPORTED:
                    print(f"predict: row {number + offset}: {answer.message.removeprefix('record 0: ')}", file=log)
                answer = None
            if output_format == "csv":
                writer.writerow([] if answer is None else [answer])
            else:
                sink.write(json.dumps(answer) + "\n")
        total += len(records)
        now = time.monotonic()
        if now - reported_at >= PROGRESS_SECONDS:
            print(f"predict: {total} rows, {total / (now - started):,.0f} rows/s", file=log)
            reported_at = now
    sink.flush()
    seconds = time.monotonic() - started
    print(f"predict: {total} rows in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} rows/s)"
          f"{f', {failed} failed' if failed else ''}", file=log)
    if failed:
        print(f"error: {failed} of {total} rows could not be scored ({'empty lines' if output_format == 'csv' else 'null'}"
              f" in the output; the first {min(failed, REPORTED)} are listed above)", file=log)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="the rows to score (default: stdin)")
    parser.add_argument("--output", help="where the predictions go (default: stdout)")
    parser.add_argument("--format", choices=["csv", "jsonl"], help="the input's format (default: from --input's "
                        "suffix, else from its first character: { or [ is JSON lines)")
    parser.add_argument("--output-format", choices=["csv", "jsonl"], help="default: the input's")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows scored at once")
    args = parser.parse_args(argv)
    from . import logs
    logs.configure("WARNING")
    try:
        source = open(args.input, encoding="utf-8-sig", newline="") if args.input else \
            io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
        sink = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    input_format = args.format or _sniff(source, args.input)
    from .bundle import BundleError
    try:
        with source, sink:
            return run(source, sink, sys.stderr, input_format, args.output_format or input_format, args.chunk_rows)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (UnicodeDecodeError, csv.Error) as exc:
        print(f"error: the input cannot be read: {exc}", file=sys.stderr)
        return 2


def _sniff(source: Any, name: str | None) -> str:
    """csv or jsonl: by the file's suffix, else by its first character (peeked, not consumed)."""
    if name and name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name and name.endswith(".csv"):
        return "csv"
    peek = source.buffer.peek(1)[:1] if hasattr(source, "buffer") and hasattr(source.buffer, "peek") else b""
    return "jsonl" if peek in (b"{", b"[") else "csv"
