"""The wheel and the sdist, built as a release would be (``python -m build``: the sdist first, then the
wheel from the unpacked sdist, so a file missing from the sdist breaks the wheel too), and what they hold.

One module-scoped build (about 10-25 s: ``build`` installs the build backend in a fresh environment), so
the tests that use it are marked slow; they run in CI all the same."""

from __future__ import annotations

import email
import email.message
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tinker_recovery
from tinker_recovery import _version

REPO = Path(__file__).resolve().parents[1]
BUILD_TIME_OUT_S = 300


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy of the tracked files: setuptools would also ship whatever a stale
    # *.egg-info/SOURCES.txt of an earlier build lists, hiding a file missing from MANIFEST.in.
    source = tmp_path_factory.mktemp("source")
    for name in tracked():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                            capture_output=True, text=True, timeout=BUILD_TIME_OUT_S, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SetuptoolsDeprecationWarning" not in result.stdout + result.stderr  # e.g. the license table
    yield out


def only(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def wheel(dist: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(only(dist, "*.whl"))


@pytest.fixture(scope="module")
def sdist_names(dist: Path) -> set[str]:
    with tarfile.open(only(dist, "*.tar.gz")) as archive:
        names = archive.getnames()
    prefix = f"tinker_recovery-{_version.__version__}/"
    assert all(name == prefix.rstrip("/") or name.startswith(prefix) for name in names)
    return {name.removeprefix(prefix) for name in names}


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    name = only_name(wheel, r"tinker_recovery-[^/]+\.dist-info/METADATA")
    return email.message_from_bytes(wheel.read(name))


def only_name(wheel: zipfile.ZipFile, pattern: str) -> str:
    found = [name for name in wheel.namelist() if re.fullmatch(pattern, name)]
    assert len(found) == 1, found
    return found[0]


def tracked(*folders: str) -> set[str]:
    """The files git tracks under these folders (the working copy's, when not a git checkout)."""
    result = subprocess.run(["git", "-C", str(REPO), "ls-files", "--", *folders], capture_output=True,
                            text=True, check=False)
    if result.returncode == 0 and result.stdout.strip():
        return {line for line in result.stdout.splitlines() if (REPO / line).is_file()}
    skipped = {"__pycache__", ".git", "build", "dist", ".pytest_cache", ".hypothesis"}
    paths = [path for folder in folders or (".",) for path in (REPO / folder).rglob("*") if path.is_file()]
    return {path.relative_to(REPO).as_posix() for path in paths
            if not skipped & set(path.parts) and not any(part.endswith(".egg-info") for part in path.parts)}


# --- one version, in one place -------------------------------------------------------------------


def test_the_version_has_one_source():
    assert tinker_recovery.__version__ is _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", _version.__version__)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "tinker_recovery._version.__version__" }' in pyproject
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.MULTILINE)  # no literal version


def test_the_changelog_dates_each_release_and_heads_unreleased_for_the_next():
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.MULTILINE)
    assert headings[0][0] == "Unreleased"
    released = headings[1:]
    assert released and all(re.fullmatch(r" - \d{4}-\d\d-\d\d", date) for _, date in released), released
    assert ("0.1.0", " - 2026-11-28") in released
    next_version = re.search(r"## \[Unreleased\]\s+Heading for (\d+\.\d+\.\d+)\.", text)
    assert next_version is not None
    assert _version.__version__.startswith(next_version.group(1))


# --- the first ten minutes ----------------------------------------------------------------------

RUNTIME = {"tinker_recovery", "requests", "urllib3", "certifi", "idna", "charset_normalizer", "attr", "attrs",
           "blinker", "backoff", "msgspec"}


def sh_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", body, re.DOTALL)]


def test_the_readme_first_command_installs_only_the_runtime_and_the_second_runs_the_tests():
    first, second = sh_blocks("Try it")[:2]
    assert first == "python -m pip install -e . && python -m tinker_recovery.examples.simulated"
    assert second == 'python -m pip install -e ".[test,dev]" && python -m pytest'  # what .ci/run installs
    ci = (REPO / ".ci" / "run").read_text()
    assert 'python -m pip install -e ".[test,dev]"' in ci and "python -m pytest" in ci
    assert "python -m ruff check" in ci and "python -m mypy --strict" in ci


def test_the_offline_example_imports_nothing_beyond_the_runtime_dependencies(tmp_path):
    """The first command's example, with every module outside the standard library and the five runtime
    dependencies (and theirs) made unimportable: it still succeeds, so a plain install is enough."""
    script = f"""
import importlib.abc, runpy, sys
allowed = set(sys.stdlib_module_names) | set({sorted(RUNTIME)!r})
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in allowed:
            raise ImportError(f"the offline example imported {{name}}")
        return None
sys.meta_path.insert(0, Refuse())
runpy.run_module("tinker_recovery.examples.simulated", run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                            env={**_clean_env(), "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("simulated: OK, the corrupted run was recovered")


# --- the wheel -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_ships_the_package_typed_and_licensed_and_nothing_else(wheel):
    names = set(wheel.namelist())
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"tinker_recovery", f"tinker_recovery-{_version.__version__}.dist-info"}
    package = {path.relative_to(REPO).as_posix() for path in (REPO / "tinker_recovery").rglob("*.py")}
    assert package <= names, package - names
    assert "tinker_recovery/py.typed" in names
    license_name = only_name(wheel, r"tinker_recovery-[^/]+\.dist-info/licenses/LICENSE")
    assert wheel.read(license_name) == (REPO / "LICENSE").read_bytes()
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    entry_points_name = only_name(wheel, r"tinker_recovery-[^/]+\.dist-info/entry_points\.txt")
    entry_points = wheel.read(entry_points_name).decode()
    assert "tinker-recovery = tinker_recovery.cli:main" in entry_points


@pytest.mark.slow
def test_the_wheel_metadata_is_complete(wheel):
    meta = metadata(wheel)
    assert meta["Name"] == "tinker-recovery"
    assert meta["Version"] == _version.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None  # the expression replaces the deprecated free-text field
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Author"] == "tinker-recovery developers"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression only
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL"))
    assert urls["Homepage"] == "https://github.com/tinker-recovery/tinker-recovery"
    assert {"Source", "Issues", "Changelog"} <= set(urls)
    assert set(meta.get_all("Provides-Extra")) >= {"tinker", "test", "dev"}
    requires = meta.get_all("Requires-Dist")
    plain = sorted(r.split(">")[0] for r in requires if "extra ==" not in r)
    assert plain == ["attrs", "backoff", "blinker", "msgspec", "requests"]  # the first command installs these
    assert meta.get_payload().startswith("# tinker-recovery")  # the README is the long description


# --- the sdist -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_sdist_holds_what_the_tests_need(sdist_names):
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "setup.cfg", "PKG-INFO",
                 "MANIFEST.in", "tinker_recovery/py.typed", ".ci/run"):
        assert name in sdist_names, name
    for name in sorted(tracked("tests", "examples", "benchmarks", "tinker_recovery")):
        assert name in sdist_names, name
    assert not [name for name in sdist_names if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.slow
def test_tests_that_read_repository_files_pass_from_the_unpacked_sdist(dist, tmp_path):
    """The tests that read examples/, the README or the version, run from the unpacked sdist."""
    with tarfile.open(only(dist, "*.tar.gz")) as archive:
        archive.extractall(tmp_path, filter="data")
    root = tmp_path / f"tinker_recovery-{_version.__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_packaging.py::test_the_version_has_one_source",
         "tests/test_packaging.py::test_the_changelog_dates_each_release_and_heads_unreleased_for_the_next",
         "tests/test_examples.py", "-k", "training_loop or version or changelog"],
        cwd=root, env={**_clean_env(), "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=BUILD_TIME_OUT_S, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b[3-9] passed|\b\d\d+ passed", result.stdout), result.stdout[-500:]
    assert f"{root}/tinker_recovery" in subprocess.run(
        [sys.executable, "-c", "import tinker_recovery; print(tinker_recovery.__file__)"], cwd=root,
        env={**_clean_env(), "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True).stdout


def _clean_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items()
            if not key.startswith(("TINKER_", "PYTEST_")) and key != "PYTHONPATH"}
