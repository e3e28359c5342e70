"""The size diff between two build reports (issue 26, item 1): totals, layers matched by their command, packages by
name, as text and markdown; the growth gate; `sms-report diff` and `scripts/build.py --compare`'s argument checks.
A diff of two real images: tests/container/test_grpc_image.py (the default image against the one with gRPC)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from imagebuild import BuildError, cli
from imagebuild.size_diff import check_growth, diff, main, render_markdown, render_text

BASE = {
    "image": "sklearn-model-service:1.0.0", "size": 192_400_000, "compressed_size": 66_800_000,
    "zstd_size": 60_600_000,
    "layers": [{"created_by": "debian trixie packages: base (47d6)", "size": 12_480_000},
               {"created_by": "COPY dir in /opt/venv", "size": 159_220_000},
               {"created_by": "COPY dir in /", "size": 7_660_000},
               {"created_by": "COPY dir in /app/service/", "size": 215_000},
               {"created_by": "COPY dir in /", "size": 266_000}],
    "packages": [{"name": "scipy", "size": 82_790_000}, {"name": "numpy", "size": 46_030_000},
                 {"name": "sklearn", "size": 21_270_000}],
}


def grown(extra: int) -> dict:
    """BASE with a package of `extra` bytes added to the venv layer, and the service layer a little smaller."""
    head = copy.deepcopy(BASE)
    head["image"] = "sklearn-model-service:1.0.0-grpc"
    head["size"] += extra - 5_000
    head["compressed_size"] += extra // 3
    head["zstd_size"] += extra // 4
    head["layers"][1]["size"] += extra
    head["layers"][3]["size"] -= 5_000
    head["packages"].insert(1, {"name": "grpc", "size": extra})
    return head


def test_totals_layers_and_packages_with_deltas():
    changes = diff(BASE, grown(18_300_000))
    assert [(row["key"], row["delta"]) for row in changes["totals"]] == [
        ("uncompressed", 18_295_000), ("gzip", 6_100_000), ("zstd", 4_575_000)]
    layers = {row["key"]: row["delta"] for row in changes["layers"]}
    assert layers[("COPY dir in /opt/venv", 0)] == 18_300_000 and layers[("COPY dir in /app/service/", 0)] == -5_000
    assert layers[("COPY dir in /", 0)] == layers[("COPY dir in /", 1)] == 0  # the same command twice: by order
    packages = {row["key"]: (row["base"], row["delta"]) for row in changes["packages"]}
    assert packages["grpc"] == (None, 18_300_000) and packages["scipy"] == (82_790_000, 0)
    text = render_text(changes)
    assert "   192.4 MB ->  210.7 MB   +18.3 MB  uncompressed" in text
    assert "     0.2 MB ->    0.2 MB    -5.0 kB  COPY dir in /app/service/" in text and "(3 unchanged)" in text
    assert "          - ->   18.3 MB   +18.3 MB  grpc" in text


def test_markdown_for_a_job_summary():
    markdown = render_markdown(diff(BASE, grown(18_300_000)))
    assert markdown.startswith("### Image size: 210.7 MB (+18.3 MB)\n")
    assert "| uncompressed | 192.4 MB | 210.7 MB | +18.3 MB |" in markdown
    assert "<details><summary>Packages: 1 changed</summary>" in markdown
    assert "| `grpc` | - | 18.3 MB | +18.3 MB |" in markdown
    assert "| `COPY dir in /opt/venv` | 159.2 MB | 177.5 MB | +18.3 MB |" in markdown


def test_the_growth_gate_names_what_grew():
    changes = diff(BASE, grown(18_300_000))
    check_growth(changes, 20)
    with pytest.raises(BuildError) as caught:
        check_growth(changes, 10)
    assert str(caught.value) == ("image sklearn-model-service:1.0.0-grpc grew by 18.3 MB against "
                                 "sklearn-model-service:1.0.0, more than --max-growth 10 MB; largest growth: grpc "
                                 "+18.3 MB")
    check_growth(diff(grown(18_300_000), BASE), 0)  # shrinking passes any gate


def test_sms_report_diff(tmp_path: Path, capsys):
    base, head, summary = tmp_path / "base.json", tmp_path / "head.json", tmp_path / "summary.md"
    base.write_text(json.dumps(BASE))
    head.write_text(json.dumps(grown(18_300_000)))
    summary.write_text("## Tests\n")
    assert main(["diff", str(base), str(head), "--markdown", str(summary), "--max-growth", "20"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("sklearn-model-service:1.0.0 -> sklearn-model-service:1.0.0-grpc\n") and not out.err
    assert summary.read_text().startswith("## Tests\n### Image size: 210.7 MB (+18.3 MB)")  # appended
    assert main(["diff", str(base), str(head), "--max-growth", "1"]) == 1
    out = capsys.readouterr()
    assert "+18.3 MB  grpc" in out.out  # the diff is printed before the gate fails
    assert out.err.startswith("error: image sklearn-model-service:1.0.0-grpc grew by 18.3 MB")
    (tmp_path / "bad.json").write_text("[1]")
    assert main(["diff", str(tmp_path / "bad.json"), str(head)]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path / 'bad.json'}: not a build report (written by "
                                       f"scripts/build.py --report)\n")


def test_build_arguments(tmp_path: Path):
    report = tmp_path / "report.json"
    assert cli.check_arguments(cli.parse(["--max-growth", "5"])) == \
        "--max-growth and --summary apply to --compare: give the earlier build's report too"
    assert cli.check_arguments(cli.parse(["--compare", str(report)])) == \
        f"--compare {report}: no such report (scripts/build.py --report writes one)"
    report.write_text(json.dumps(BASE))
    assert cli.check_arguments(cli.parse(["--compare", str(report), "--max-growth", "5"])) is None
