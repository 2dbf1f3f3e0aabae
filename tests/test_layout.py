"""The layout's rules, checked on the source: transforms are pure, and engines stay apart.

Transforms are functions from frames to frames. The jobs own paths, the clock and the
environment, so a transform that opened a file or read the time would make the same input give
other rows on another day or machine, and would bypass the job's planning and error handling.
An engine package that imported another engine's package would bring back the hand-kept copy
of the link core that the one-core design removed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
TRANSFORMS = ROOT / "transforms"

# Modules whose use is I/O, the clock or the environment.
_IO_MODULES = {"os", "sys", "io", "pathlib", "shutil", "tempfile", "glob", "socket",
               "subprocess", "urllib", "http", "requests", "time", "pyspark", "duckdb",
               "deltalake", "pyarrow.parquet", "pyarrow.dataset"}  # fmt: skip
# Calls that do I/O or read the clock, by the name they are called with.
_IO_CALLS = {"open", "now", "today", "utcnow", "getenv", "urlopen"}
_IO_PREFIXES = ("read_", "scan_", "write_", "sink_")


def _imported(node: ast.AST, names: bool = True, relative: bool = False) -> list[str]:
    """The modules an import statement names (and, with `names`, each `module.name` it takes
    from a module); nothing for any other node, or for a relative import unless `relative`."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and (relative or node.level == 0):
        taken = [f"{node.module}.{a.name}" for a in node.names] if names else []
        return [node.module, *taken]
    return []


def impurities(source: str) -> list[str]:
    """Where `source` does I/O or reads the clock: `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for name in _imported(node):
            if name in _IO_MODULES or name.split(".")[0] in _IO_MODULES - {"pyarrow"}:
                found.append(f"{node.lineno}: imports {name}")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in _IO_CALLS or called.startswith(_IO_PREFIXES):
                found.append(f"{node.lineno}: calls {called}()")
    return found


def engine_imports(source: str, engine: str) -> list[str]:
    """Where `source`, a module of engine package `engine`, imports another engine's package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for module in _imported(node, relative=True):
            parts = module.split(".")
            others = [p for p in parts if p.endswith("_engine") and p != engine]
            if others or (engine != "spark_engine" and parts[0] == "pyspark"):
                found.append(f"{node.lineno}: imports {module}")
    return found


MODULES = sorted(TRANSFORMS.rglob("*.py"))
ENGINES = sorted(p for p in TRANSFORMS.iterdir() if p.is_dir() and p.name.endswith("_engine"))


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_transforms_do_no_io_and_read_no_clock(module: Path) -> None:
    assert impurities(module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("module", [m for e in ENGINES for m in sorted(e.rglob("*.py"))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())  # fmt: skip
def test_an_engine_package_never_imports_another_engine(module: Path) -> None:
    engine = module.relative_to(TRANSFORMS).parts[0]
    assert engine_imports(module.read_text(encoding="utf-8"), engine) == []


NEUTRAL = sorted(
    [p for p in TRANSFORMS.glob("*.py")] + [p for p in (ROOT / "expectations").glob("*.py")]
)
# The engine-neutral modules the engines themselves build on (the link rules as data and their
# one evaluation); `engine.py` and `discover.py` are the front ends that call the core.
FRONT_ENDS = {"engine.py", "discover.py"}


@pytest.mark.parametrize("module", [m for m in NEUTRAL if m.name not in FRONT_ENDS],
                         ids=lambda p: p.relative_to(ROOT).as_posix())  # fmt: skip
def test_rules_and_expectations_never_import_an_engine(module: Path) -> None:
    """The rules (`transforms/rules.py`, `schema.py`, `expressions.py`, ...) and the
    expectations are built from data every engine shares, never from an engine's internals."""
    assert engine_imports(module.read_text(encoding="utf-8"), "") == []


def test_the_guards_find_what_they_guard_against() -> None:
    impure = (
        "import os\nfrom pathlib import Path\nimport polars as pl\n"
        "x = open('f')\ny = pl.scan_parquet('f')\nfrom datetime import datetime\n"
        "z = datetime.now()\nframe.sink_parquet('f')\n"
    )
    assert impurities(impure) == [
        "1: imports os",
        "2: imports pathlib",
        "2: imports pathlib.Path",
        "4: calls open()",
        "5: calls scan_parquet()",
        "7: calls now()",
        "8: calls sink_parquet()",
    ]
    pure = "import polars as pl\nfrom datetime import datetime, timedelta\nx = pl.col('a') + 1\n"
    assert impurities(pure) == []
    crossing = (
        "from transforms.spark_engine import link\nimport pyspark.sql\n"
        "from ..spark_engine import x\n"
    )
    assert engine_imports(crossing, "polars_engine") == [
        "1: imports transforms.spark_engine",
        "1: imports transforms.spark_engine.link",
        "2: imports pyspark.sql",
        "3: imports spark_engine",
        "3: imports spark_engine.x",
    ]
    internals = "from proxylink.transforms.polars_engine.classify import proxy_match\n"
    assert engine_imports(internals, "") == [
        "1: imports proxylink.transforms.polars_engine.classify",
        "1: imports proxylink.transforms.polars_engine.classify.proxy_match",
    ]
    assert ENGINES and len(MODULES) > 10  # the tree the guards walk is the real one
    assert {p.name for p in NEUTRAL} >= {"rules.py", "expressions.py", "profiles.py"}


def bare_imports(source: str) -> list[str]:
    """Where `source` imports the code by its folder name (`jobs.nightly.run`) instead of the
    installed package (`proxylink.jobs.nightly.run`): the one would load a second copy of every
    module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules = _imported(node, names=False)
        found += [f"{node.lineno}: imports {m}" for m in modules if m.split(".")[0] in _FOLDERS]
    return found


_FOLDERS = {"jobs", "transforms", "expectations", "helpers", "cdp"}
SOURCES = sorted(
    p
    for top in ("jobs", "transforms", "expectations", "tests", "bench", "deploy")
    for p in (ROOT / top).rglob("*.py")
    if ".data" not in p.parts
)


@pytest.mark.parametrize("module", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_imports_the_proxylink_package_never_a_bare_folder(module: Path) -> None:
    assert bare_imports(module.read_text(encoding="utf-8")) == []


def test_the_bare_import_guard_finds_one() -> None:
    source = (
        "import jobs.nightly.run\nfrom transforms import schema\nfrom proxylink.jobs import run\n"
    )
    assert bare_imports(source) == ["1: imports jobs.nightly.run", "2: imports transforms"]
    assert (ROOT / "proxylink" / "jobs").resolve() == ROOT / "jobs"  # the package's folders


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """A built wheel adds `proxylink` to site-packages and nothing else, with every module."""
    import subprocess
    import sys
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
         str(ROOT)], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("proxylink-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["proxylink"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "proxylink"
    }
    modules = {p.relative_to(ROOT).as_posix() for p in MODULES} | {
        p.relative_to(ROOT).as_posix() for top in ("jobs", "expectations")
        for p in (ROOT / top).rglob("*.py")
    }  # fmt: skip
    assert {f"proxylink/{m}" for m in modules} <= set(names)
    assert "proxylink/jobs/engines/spark-log4j2.properties" in names
