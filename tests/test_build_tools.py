"""The build script's parts that need no Docker engine: requirements, lint, gate, rootfs rules, errors."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagebuild import BuildError, debian_lock, gate, requirements, rootfs, wheels

ROOT = Path(__file__).resolve().parent.parent


def test_requirements_are_current():
    pins = requirements.check()
    assert {"flask", "waitress", "scikit-learn", "joblib", "numpy", "werkzeug"} <= set(pins)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name in ("service", "modelcard", "derivecard", "requirements.in", "requirements.txt"):
        source = ROOT / name
        shutil.copytree(source, tmp_path / name) if source.is_dir() else shutil.copy(source, tmp_path / name)
    return tmp_path


def test_a_new_import_makes_requirements_in_stale(project):
    (project / "service" / "extra.py").write_text("import yaml\n")
    with pytest.raises(BuildError, match="imported but not listed: pyyaml.*--update-requirements"):
        requirements.check(project)


def test_a_dropped_import_makes_requirements_in_stale(project):
    text = (project / "requirements.in").read_text()
    (project / "requirements.in").write_text(text + "requests\n")
    with pytest.raises(BuildError, match="listed but not needed: requests"):
        requirements.check(project)


def test_requirements_txt_must_come_from_requirements_in(project):
    text = (project / "requirements.in").read_text()
    assert "\njoblib\n" in text
    (project / "requirements.in").write_text(text.replace("\njoblib\n", "\njoblib>=1.2\n", 1))
    with pytest.raises(BuildError, match="requirements.txt was not compiled from the current requirements.in"):
        requirements.check(project)


def test_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "Dockerfile.builder", "Dockerfile.runtime", "build/Dockerfile.debug",
                             "build/Dockerfile.cross"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout


def fake_report(size: int) -> dict:
    return {"image": "x:1", "size": size,
            "layers": [{"size": size - 10, "created_by": "COPY dir in /opt/venv"}, {"size": 10, "created_by": "x"}],
            "packages": [{"name": "scipy", "size": 100_000_000}, {"name": "numpy", "size": 50_000_000}]}


def test_gate_names_the_excess_and_the_biggest_contributors():
    gate.check(fake_report(250_000_000), 250_000_000)
    with pytest.raises(BuildError) as raised:
        gate.check(fake_report(262_500_000), 250_000_000)
    message = str(raised.value)
    assert "262.5 MB, 12.5 MB over the budget of 250.0 MB" in message
    assert "scipy 100.0 MB" in message and "/opt/venv" in message


def test_budget_file_is_a_deliberate_number():
    assert 100_000_000 <= gate.budget() <= 250_000_000
    assert 50_000_000 <= gate.budget(compressed=True) < gate.budget()
    assert gate.budget(grpc=True) - gate.budget() == 22_000_000  # --grpc's allowance (issue 24)
    assert gate.budget(grpc=True, compressed=True) - gate.budget(compressed=True) == 9_000_000


def test_the_gzip_budget_is_gated_too():
    report = {**fake_report(190_000_000), "compressed_size": 70_000_000}
    gate.check(report, 200_000_000)  # no gzip limit given: a --size-budget build
    with pytest.raises(BuildError) as raised:
        gate.check(report, 200_000_000, "build/size-budget.json", 68_000_000)
    assert str(raised.value) == ("image x:1 is 70.0 MB gzip, 2.0 MB over the gzip budget of 68.0 MB "
                                 "(build/size-budget.json); its uncompressed size is 190.0 MB")


@pytest.mark.parametrize("name,kept", [
    ("usr/share/doc/libc6/copyright", True),
    ("usr/share/doc/libc6", True),
    ("usr/share/doc/libc6/changelog.Debian.gz", False),
    ("usr/share/man/man1/python3.13.1.gz", False),
    ("usr/share/locale/de/LC_MESSAGES/libc.mo", False),
    ("usr/lib/x86_64-linux-gnu/gconv/UTF-16.so", False),
    ("usr/lib/python3.13/json/__init__.py", False),  # the image brings the standard library as bytecode
    ("usr/lib/python3.13/lib-dynload/_json.cpython-313-x86_64-linux-gnu.so", True),
    ("usr/lib/python3.13/lib-dynload/_sqlite3.cpython-313-x86_64-linux-gnu.so", False),
    ("usr/lib/python3.13/pydoc_data", False),
    ("usr/lib/python3.13/pydoc_data/topics.py", False),
    ("usr/lib/x86_64-linux-gnu/libmvec.so.1", False),
    ("usr/lib/x86_64-linux-gnu/libm.so.6", True),
    ("usr/share/gcc/python/libstdcxx/v6/printers.py", False),
    ("usr/share/zoneinfo/Europe/Paris", True),
])
def test_runtime_root_keeps_licences_and_drops_docs(name, kept):
    assert rootfs._keep(name) is kept


@pytest.mark.parametrize("member,canonical", [
    ("./bin/true", "usr/bin/true"), ("./lib64/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2"),
    ("./usr/lib/x", "usr/lib/x"), ("./etc/passwd", "etc/passwd"), ("./library/x", "library/x"),
])
def test_runtime_root_is_merged_usr(member, canonical):
    assert rootfs._canonical(member) == canonical


def test_runtime_package_list_has_layers_and_no_shell():
    groups = debian_lock.read_groups(debian_lock.RUNTIME_LIST)
    assert list(groups) == ["static", "base", "cc", "python"]
    names = {name for group in groups.values() for name in group}
    assert not names & {"dash", "bash", "busybox", "apt", "dpkg", "coreutils"}
    lock = debian_lock.read_lock()
    assert sorted(lock) == ["amd64", "arm64"]
    for architecture, sections in lock.items():
        assert set(sections["runtime"]["packages"]) == names
        for kind in ("builder", "runtime", "debug"):
            entries = sections[kind]["packages"].values()
            assert all(len(entry["sha256"]) == 64 for entry in entries)
            # each .deb of the architecture's own, or architecture-independent
            assert all(entry["path"].endswith((f"_{architecture}.deb", "_all.deb")) for entry in entries)


def test_build_without_docker_engine_is_one_clear_line():
    result = subprocess.run([sys.executable, "scripts/build.py"], cwd=ROOT, capture_output=True, text=True,
                            env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("error: no Docker engine answers")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("pyproject,expected", [
    (None, wheels.DEFAULT_BUILD_REQUIRES),
    ('[build-system]\nrequires = ["hatchling>=1.20"]\nbuild-backend = "hatchling.build"\n', ["hatchling>=1.20"]),
    ('[project]\nname = "pkg"\n', wheels.DEFAULT_BUILD_REQUIRES),
])
def test_sdist_build_requirements_are_read_from_pyproject(tmp_path, pyproject, expected):
    import tarfile
    (tmp_path / "setup.py").write_text("")
    if pyproject:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in ("setup.py", "pyproject.toml"):
            if (tmp_path / name).exists():
                archive.add(tmp_path / name, arcname=f"pkg-1.0/{name}")
    assert wheels.build_requires(sdist) == expected


def test_builds_at_once_fill_one_wheelhouse_without_reading_each_others_halves(tmp_path, monkeypatch):
    """Two builds of the same requirements at once (a CI matrix on one runner, say): each downloads into a
    folder of its own, never the one builds read, and the first complete one is kept; a folder an interrupted
    build left is replaced; once complete, nothing is fetched again."""
    import threading
    import time
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6 \\\n    --hash=sha256:00\nscipy==1.17.1 \\\n    --hash=sha256:11\n")
    cache = tmp_path / "cache"
    monkeypatch.setattr(wheels, "_pip", lambda *args: subprocess.CompletedProcess(args, 1, "", "ERROR: no wheel"))
    monkeypatch.setattr(wheels, "fetch", lambda *_: None)
    final = cache / wheels.wheelhouse(requirements, cache=tmp_path / "probe").name  # the folder builds read
    inside = threading.Barrier(2, timeout=10)
    written: list[tuple[str, Path]] = []

    def slow_fetch(block: str, folder: Path, platform, from_source: bool) -> None:
        name = block.split("==")[0]
        written.append((name, folder))
        with (folder / f"{name}.whl").open("w") as wheel:
            wheel.write("first half,")
            wheel.flush()
            if name == "numpy":
                inside.wait()  # both builds are writing now
                assert not final.exists() or not (final / "numpy.whl").exists()
            time.sleep(0.05)
            wheel.write("second half")

    monkeypatch.setattr(wheels, "fetch", slow_fetch)
    results: list[Path] = []
    builds = [threading.Thread(target=lambda: results.append(wheels.wheelhouse(requirements, cache=cache)))
              for _ in range(2)]
    for build in builds:
        build.start()
    for build in builds:
        build.join(timeout=20)
    assert results == [final, final]
    folders = {folder for _, folder in written}
    assert sorted(name for name, _ in written) == ["numpy", "numpy", "scipy", "scipy"] and len(folders) == 2
    assert final not in folders
    complete = {"numpy.whl": "first half,second half", "scipy.whl": "first half,second half", wheels.COMPLETE: "ok\n"}
    assert {p.name: p.read_text() for p in final.iterdir()} == complete
    assert [p.name for p in cache.iterdir()] == [final.name]  # no build's own folder left behind
    written.clear()
    assert wheels.wheelhouse(requirements, cache=cache) == final and written == []

    (final / wheels.COMPLETE).unlink()  # as an interrupted build leaves it
    (final / "numpy.whl").write_text("first half,")
    monkeypatch.setattr(wheels, "fetch", lambda block, folder, *_: (folder / f"{block.split('==')[0]}.whl")
                        .write_text("first half,second half"))
    assert wheels.wheelhouse(requirements, cache=cache) == final
    assert {p.name: p.read_text() for p in final.iterdir()} == complete


def test_a_wheelhouse_is_one_pip_unless_a_requirement_has_no_wheel(tmp_path, monkeypatch):
    """All of requirements.txt in one `pip download` (2.0 s for the default's 17, against 9.4 s for one pip each);
    where it fails (a requirement with no wheel for the image), one pip per requirement, which builds sdists and
    says which requirement failed."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6 \\\n    --hash=sha256:00\nodd==1.0 \\\n    --hash=sha256:11\n")
    calls: list[tuple[str, ...]] = []
    fetched: list[str] = []
    one_each = ["numpy==2.4.6 \\\n    --hash=sha256:00", "odd==1.0 \\\n    --hash=sha256:11"]
    for code, expected in ((0, []), (1, one_each)):
        calls.clear()
        fetched.clear()
        monkeypatch.setattr(wheels, "_pip", lambda *args, code=code: calls.append(args)
                            or subprocess.CompletedProcess(args, code, "", "ERROR: odd has no wheel"))
        monkeypatch.setattr(wheels, "fetch", lambda block, *_: fetched.append(block))
        wheels.wheelhouse(requirements, cache=tmp_path / f"cache-{code}")
        assert len(calls) == 1 and calls[0][-2:] == ("-r", str(requirements)) and "--require-hashes" in calls[0]
        assert "--only-binary=:all:" in calls[0] and fetched == expected


def test_superseded_bases_are_removed_and_the_record_rewritten_whole(tmp_path):
    """The bases a checkout used before and this build does not are removed unless the lock still names them
    (one already gone is no error): an amd64-only build keeps the arm64 bases of an earlier build for both, and
    the record keeps naming them; it is written with write_atomic (another build may be reading it)."""
    import docker.errors
    from imagebuild import bases
    removed: list[str] = []

    class Images:
        def remove(self, tag: str) -> None:
            removed.append(tag)
            if tag.endswith(":gone"):
                raise docker.errors.ImageNotFound(tag)

    class Client:
        images = Images()

    record = tmp_path / "cache" / "base-images.json"
    bases.remove_superseded(Client(), {"base/runtime:a"}, set(), record)
    assert removed == [] and json.loads(record.read_text()) == ["base/runtime:a"]
    record.write_text(json.dumps(["base/builder:gone", "base/runtime:a", "base/runtime:arm64", "base/runtime:old"]))
    bases.remove_superseded(Client(), {"base/runtime:a", "base/runtime:b"}, {"base/runtime:arm64", "base/x:n"},
                            record)
    assert removed == ["base/builder:gone", "base/runtime:old"]
    assert json.loads(record.read_text()) == ["base/runtime:a", "base/runtime:arm64", "base/runtime:b"]
    assert [p.name for p in record.parent.iterdir()] == [record.name]


def test_the_lock_names_a_builder_and_a_runtime_base_for_each_platform():
    """What remove_superseded keeps: the references the builds themselves use, for amd64 and arm64 alike."""
    from imagebuild import bases, debian_lock
    from imagebuild.platforms import PLATFORMS
    lock = debian_lock.read_lock()
    named = bases.named_by_lock(lock)
    expected = {bases._reference(kind, debian_lock.sections(lock, platform)[kind])
                for platform in PLATFORMS.values() for kind in ("builder", "runtime")}
    assert named == expected and len(named) == 4 and all(ref.startswith(bases.BASE_REPOSITORY) for ref in named)
    only_amd64 = {key: value for key, value in lock.items() if key == "amd64"}
    assert len(bases.named_by_lock(only_amd64)) == 2


def test_an_atomic_write_shows_readers_the_old_file_or_the_new_one_whole(tmp_path, monkeypatch):
    """write_atomic: the new content is complete in a temporary file of this write's own before it replaces the
    old file in one step; missing folders are made; nothing else is left beside it."""
    from imagebuild import write_atomic
    path = tmp_path / "folder" / "file.json"
    write_atomic(path, "old")
    seen: list[tuple[str, str, str]] = []
    replace = os.replace

    def watched(source, target) -> None:
        seen.append((Path(source).read_text(), Path(target).read_text(), Path(source).name))
        replace(source, target)

    monkeypatch.setattr(os, "replace", watched)
    write_atomic(path, "new" * 10_000)
    write_atomic(path, b"bytes")
    assert [(new, old) for new, old, _ in seen] == [("new" * 10_000, "old"), ("bytes", "new" * 10_000)]
    assert seen[0][2] != seen[1][2] and all(name.startswith(".file.json.") for *_, name in seen)
    assert path.read_text() == "bytes" and list(path.parent.iterdir()) == [path]


def test_an_atomic_write_gives_the_mode_open_would_and_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    """A new file: 0o666 less the umask (the build's reports were 0600, unreadable to another user); an existing
    file keeps its mode; a write that fails leaves the old file and no temporary one."""
    from imagebuild import write_atomic
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        previous = os.umask(mask)
        try:
            write_atomic(tmp_path / f"new-{mask:o}.json", "{}")
        finally:
            os.umask(previous)
        assert (tmp_path / f"new-{mask:o}.json").stat().st_mode & 0o777 == mode
        assert os.umask(previous) == previous  # the umask is as it was
        os.umask(previous)
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o640)
    write_atomic(kept, "new")
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "new"

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(kept, "newer")
    assert kept.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "kept.json", "new-2.json", "new-22.json", "new-77.json"]


def test_requirement_blocks_keep_their_hashes():
    found = wheels.blocks(ROOT / "requirements.txt")
    assert len(found) == len(requirements.pinned(ROOT / "requirements.txt"))
    assert all("==" in block and "--hash=sha256:" in block for block in found)


@pytest.mark.parametrize("repository,valid", [
    ("ghcr.io/you/sklearn-model-service", True), ("127.0.0.1:5000/ml/model_server", True),
    ("docker.io/you/a.b__c-d", True), ("you/name", True), ("name", True),
    ("ghcr.io/You/Name", False), ("you/name:tag", False), ("you/name@sha256:abc", False),
    ("you//name", False), ("you/name-", False), ("has space/x", False), ("", False),
])
def test_repository_names_follow_dockers_grammar(repository, valid):
    from imagebuild.publish import check_repository
    if valid:
        check_repository(repository)
    else:
        with pytest.raises(BuildError, match="is not a repository name"):
            check_repository(repository)


def test_unpushable_name_fails_before_building():
    result = subprocess.run([sys.executable, "scripts/build.py", "--push", "ghcr.io/You/Bad Name"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == ("error: 'ghcr.io/You/Bad Name' is not a repository name: lowercase letters, "
                                     "digits and . _ - between slashes, no tag or digest, "
                                     "e.g. ghcr.io/you/sklearn-model-service")


def test_swagger_ui_import_maps_to_the_package_that_renders_openapi_31(project):
    assert "swagger-ui-bundle-v2" in requirements.scanned_packages(project)
    assert "swagger-ui-bundle" not in requirements.scanned_packages(project)


def _build_script(name: str):
    """A build/ script as a module (build/ is on its path, as when the builder runs it)."""
    import importlib.util
    sys.path.insert(0, str(ROOT / "build"))
    try:
        spec = importlib.util.spec_from_file_location(f"build_{name}", ROOT / "build" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "build"))
    return module


def _trim_module():
    return _build_script("trim")


def test_trim_keeps_exactly_the_swagger_ui_files_docs_serves():
    from service import docs
    assert _trim_module().SWAGGER_UI_SERVED == set(docs.ASSETS)


def test_trim_rules_on_a_fake_site(tmp_path: Path):
    site = tmp_path / "site-packages"
    files = {
        "numpy/_core/_simd.cpython-313-x86_64-linux-gnu.so": b"simd",
        "numpy/_core/tests/_natype.py": b"kept",
        "numpy/_core/tests/test_x.py": b"dropped",
        "numpy.libs/libgfortran-1.so": b"same bytes",
        "scipy.libs/libgfortran-1.so": b"same bytes",
        "scipy.libs/libquadmath-2.so": b"other bytes",
        "swagger_ui_bundle/vendor/swagger-ui-5.31.0/swagger-ui-bundle.js": b"js",
        "swagger_ui_bundle/vendor/swagger-ui-5.31.0/swagger-ui-bundle.js.map": b"map",
        "swagger_ui_bundle/vendor/swagger-ui-5.31.0/swagger-ui-es-bundle.js": b"es",
        "sklearn/tree/_tree.pxd": b"source",
    }
    for name, data in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    removed = _trim_module().trim(site)
    left = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file() or p.is_symlink())
    assert left == ["numpy.libs/libgfortran-1.so", "numpy/_core/tests/_natype.py", "scipy.libs/libgfortran-1.so",
                    "scipy.libs/libquadmath-2.so",
                    "swagger_ui_bundle/vendor/swagger-ui-5.31.0/swagger-ui-bundle.js.gz"]
    stored = site / "swagger_ui_bundle/vendor/swagger-ui-5.31.0/swagger-ui-bundle.js.gz"
    assert gzip.decompress(stored.read_bytes()) == b"js"
    link = site / "scipy.libs/libgfortran-1.so"
    assert link.is_symlink() and str(link.readlink()) == "../numpy.libs/libgfortran-1.so"
    assert link.read_bytes() == b"same bytes"
    assert removed["duplicate vendored libraries (now symlinks)"] == (1, len(b"same bytes"))
    assert removed["Swagger UI files /docs does not serve"][0] == 2


@pytest.mark.parametrize("reference,builder", [
    ("sklearn-model-service:0.1.0", "sklearn-model-service-builder:0.1.0"),
    ("churn", "churn-builder:latest"),
    ("registry.example.internal:5000/ml/churn:2", "registry.example.internal:5000/ml/churn-builder:2"),
    ("localhost:5000/churn", "localhost:5000/churn-builder:latest"),
])
def test_each_image_gets_its_own_builder(reference, builder):
    from imagebuild.docker_build import builder_reference
    assert builder_reference(reference) == builder


@pytest.mark.parametrize("reference,stage", [
    ("sklearn-model-service:0.1.0", "sklearn-model-service-cache:0.1.0-app"),
    ("registry.example.internal:5000/ml/churn", "registry.example.internal:5000/ml/churn-cache:latest-app"),
])
def test_each_image_keeps_its_app_stage_under_its_own_tag(reference, stage):
    from imagebuild.docker_build import stage_reference
    assert stage_reference(reference) == stage


@pytest.mark.parametrize("arguments,message", [
    (["--latest"], "--latest only applies with --push"),
    (["--manifests", "out"], "--manifests only applies with --push (the manifests name the pushed digest)"),
    (["--sample", "rows.csv"], "--sample, --code and --trust apply to --model"),
    (["--model", "m.joblib", "--size-budget", "0"], "--size-budget 0: give a size in MB greater than zero"),
    (["--tag", "Churn Model:1"], "--tag Churn Model:1: not an image reference"),
    (["--model", "m.skops", "--trust", "os.system;rm"], "--trust os.system;rm: give types as module.Class"),
])
def test_bad_arguments_are_one_line_and_exit_2(arguments, message, capsys):
    from imagebuild import cli
    assert cli.main(arguments) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")


@pytest.mark.parametrize("name,message", [
    ("nothing.joblib", "--model {tmp}/nothing.joblib: no such file or folder"),
    ("model.onnx", "unknown model file type .onnx"),
    ("", "expected one model file"),
])
def test_a_model_that_cannot_be_read_is_one_line_and_exit_1(tmp_path, name, message, capsys, monkeypatch):
    from imagebuild import cli
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # checked before any engine is asked
    if name.endswith(".onnx"):
        (tmp_path / name).write_bytes(b"")
    assert cli.main(["--model", str(tmp_path / name)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0]


def test_a_hand_written_card_is_checked_before_building(tmp_path, capsys, monkeypatch):
    import json
    from imagebuild import cli
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # checked before any engine is asked
    shutil.copytree(ROOT / "models" / "iris", tmp_path / "iris")
    card = json.loads((tmp_path / "iris" / "card.json").read_text())
    card["features"][0]["type"] = "decimal"
    card["output"].pop("labels")
    (tmp_path / "iris" / "card.json").write_text(json.dumps(card))
    assert cli.main(["--model", str(tmp_path / "iris")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {tmp_path / 'iris' / 'card.json'}: card.features[0].type: must be one of \"number\", "
                     f"\"integer\", \"boolean\", \"string\", \"category\", not \"decimal\""]


def test_the_card_contract_needs_only_the_standard_library():
    """What the build shares with the service is the card contract, modelcard/, which the host's Python reads
    without the service's packages (which package imports which: import-linter's contracts in pyproject.toml)."""
    import ast
    for path in sorted((ROOT / "modelcard").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}, (path.name, imported)


def test_same_abi_vendored_libraries_are_shared_and_orphans_go(tmp_path: Path):
    site = tmp_path / "site-packages"
    libs = {"numpy.libs/libgfortran-aaa.so.5": b"numpy's", "scipy.libs/libgfortran-bbb.so.5": b"scipy's copy",
            "scipy.libs/libquadmath-ccc.so.0": b"needed only by scipy's copy",
            "scipy.libs/libgfortran-ddd.so.5": b"another ABI", "scipy.libs/libopenblas-eee.so": b"blas"}
    for name, data in libs.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    symbols = {b"numpy's": {"f@@GFORTRAN_8"}, b"scipy's copy": {"f@@GFORTRAN_8"},
               b"another ABI": {"f@@GFORTRAN_8", "g@@GFORTRAN_9"}}

    def needed(root: Path) -> set[str]:
        names = {"libopenblas-eee.so"}
        if not (root / "scipy.libs/libgfortran-bbb.so.5").is_symlink():
            names.add("libquadmath-ccc.so.0")
        return names

    saved = _trim_module().share_libraries(
        site, exported=lambda path: frozenset(symbols.get(path.read_bytes(), {path.name})), needed=needed)
    assert str((site / "scipy.libs/libgfortran-bbb.so.5").readlink()) == "../numpy.libs/libgfortran-aaa.so.5"
    assert not (site / "scipy.libs/libquadmath-ccc.so.0").exists()
    assert not (site / "scipy.libs/libgfortran-ddd.so.5").is_symlink()  # other symbols: kept as it is
    assert (site / "scipy.libs/libopenblas-eee.so").read_bytes() == b"blas"
    assert saved == {"same-ABI vendored libraries (now symlinks)": (1, len(b"scipy's copy")),
                     "vendored libraries nothing needs any more": (1, len(b"needed only by scipy's copy"))}


def test_sourceless_modules_import_and_keep_file_and_line(tmp_path: Path):
    package = tmp_path / "site" / "sourceless_demo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("def fail():\n    x = 1\n    raise ValueError('line 3')\n")
    (package / "template.py").write_text("{% if not python %}\n")
    saved = _trim_module().sourceless(tmp_path / "site")
    assert sorted(p.name for p in package.iterdir()) == ["__init__.pyc", "broken.pyc", "template.py"]
    assert saved["sources replaced by their bytecode"][0] == 2
    script = ("import traceback, sourceless_demo.broken as b\n"
              "try:\n    b.fail()\nexcept ValueError as e:\n"
              "    frame = traceback.extract_tb(e.__traceback__)[-1]\n    print(frame.filename, frame.lineno)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "site", capture_output=True, text=True,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.stdout.split() == [str(package / "broken.py"), "3"], result.stderr


def test_standard_library_bytecode_leaves_out_what_the_base_leaves_out(tmp_path: Path):
    stdlib = tmp_path / "usr/lib/python3.13"
    for name in ("json/__init__.py", "sqlite3/__init__.py", "pdb.py", "os.py", "site-packages/x.py"):
        (stdlib / name).parent.mkdir(parents=True, exist_ok=True)
        (stdlib / name).write_text("VALUE = 1\n")
    staging = tmp_path / "staging"
    trim = _trim_module()
    globs = tuple(f"{tmp_path.relative_to('/').as_posix()}/{g}" for g in
                  ("usr/lib/python3.13/sqlite3/", "usr/lib/python3.13/pdb.py"))
    trim.stdlib_bytecode(stdlib, staging, globs)
    written = sorted(p.relative_to(staging / tmp_path.relative_to("/")).as_posix() for p in staging.rglob("*.pyc"))
    assert written == ["usr/lib/python3.13/json/__init__.pyc", "usr/lib/python3.13/os.pyc"]


@pytest.mark.parametrize("name,left_out", [
    ("usr/lib/python3.13/sqlite3", True), ("usr/lib/python3.13/sqlite3/dump.py", True),
    ("usr/lib/python3.13/sqlite3x.py", False), ("usr/lib/python3.13/encodings/cp1252.py", True),
    ("usr/lib/python3.13/encodings/cp437.py", False), ("usr/lib/python3.13/encodings/utf_8.py", False),
    ("usr/lib/python3.13/_strptime.py", False), ("usr/lib/python3.13/zoneinfo/__init__.py", False),
    ("usr/lib/python3.13/lib-dynload/_codecs_jp.cpython-313-x86_64-linux-gnu.so", True),
    ("opt/venv/lib/python3.13/site-packages/sqlite3/x.py", False),
])
def test_runtime_trim_list(name, left_out):
    rules = _build_script("runtime_trim")
    assert rules.trimmed(name, rules.patterns()) is left_out


class _PruneBusy:
    """The docker SDK's images collection, answering `busy` prunes with the engine's 409 before one succeeds."""

    def __init__(self, busy: int, status: int = 409):
        self.busy, self.status, self.calls = busy, status, 0

    def prune(self, filters):
        import docker.errors
        import requests
        self.calls += 1
        if self.calls <= self.busy:
            response = requests.Response()
            response.status_code = self.status
            raise docker.errors.APIError("prune", response, "a prune operation is already running")
        return {"SpaceReclaimed": 5}


@pytest.mark.parametrize("busy, wait, reclaimed, calls", [(2, 60.0, 5, 3), (10**6, 0.0, 0, 1)],
                         ids=["waits for the other prune", "leaves it to the next build"])
def test_a_prune_already_running_on_the_engine_is_waited_for_then_left(busy, wait, reclaimed, calls, capsys):
    """Two builds finishing at once on one engine: Docker answers the second prune 409 (seen when the container
    tests first ran on two processes); the build waits for it, and gives up on pruning, not on the build, after
    `wait` seconds."""
    from types import SimpleNamespace
    from imagebuild import docker_build
    images = _PruneBusy(busy)
    pauses: list[float] = []
    assert docker_build.prune_superseded(SimpleNamespace(images=images), "x:1", wait, pauses.append) == reclaimed
    assert images.calls == calls and len(pauses) == calls - 1
    assert ("x:1 are left to the next build" in capsys.readouterr().err) is (reclaimed == 0)


def test_a_prune_that_fails_otherwise_still_fails():
    import docker.errors
    from types import SimpleNamespace
    from imagebuild import docker_build
    with pytest.raises(docker.errors.APIError):
        docker_build.prune_superseded(SimpleNamespace(images=_PruneBusy(1, 500)), "x:1", 60.0, lambda _: None)
