"""The house: the format registry drives every command, the import contracts hold, the wheel is whole."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mnist_edge.cli import cli
from mnist_edge.core import formats
from mnist_edge.core.archs import ARCH_SPECS
from mnist_edge.core.fileio import write_bytes
from mnist_edge.core.formats import FORMATS, Format, formats_to_write, predict_order, register

from .conftest import save_random_checkpoint, write_idx_dataset

ROOT = Path(__file__).resolve().parents[1]
TOY = Format("toy", "model.toy", "toy", "tests.toy_format:load", "tests.toy_format:export", note="a test's format")


# --- the registry ---------------------------------------------------------------------------------

def test_every_list_of_formats_comes_from_the_registry():
    assert [f.name for f in formats_to_write("onnx", quantize=True)] == ["onnx", "onnx-int8"]
    assert [f.name for f in formats_to_write("onnx", quantize=False)] == ["onnx"]
    every = formats_to_write("all", quantize=True)
    assert {f.name for f in every} == {f.name for f in FORMATS.values() if f.exporter}
    for f in every:  # each after the formats it is made from
        if f.source:
            assert every.index(FORMATS[f.source]) < every.index(f), f.name
    order = predict_order()
    assert order[0].name == "onnx" and all(not f.runtime_needs_torch for f in order)
    assert all(not f.int8 for f in order[:[f.int8 for f in order].index(True)])  # fp32 first
    out = subprocess.run([sys.executable, "-m", "mnist_edge.core.formats", "all"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [f.filename for f in every]  # the Makefile's list of exports


def test_each_row_resolves_its_exporter_and_loader():
    for f in FORMATS.values():
        mod, _, attr = f.loader.partition(":")
        assert Path(ROOT, *mod.split(".")).with_suffix(".py").is_file(), f.loader
        if f.exporter:
            mod, _, attr = f.exporter.partition(":")
            assert Path(ROOT, *mod.split(".")).with_suffix(".py").is_file(), f.exporter


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml in a test needs Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_extras_named_by_rows_pyproject_and_the_makefile_install_line_agree(tmp_path):
    from mnist_edge.core import deps, quiet
    from mnist_edge.core.metadata import package_versions

    if shutil.which("make") is None:
        pytest.skip("make is not installed: the Makefile's install line cannot be run")
    optional = _pyproject()["optional-dependencies"]
    named = {x for f in FORMATS.values() for x in (f.export_extra, f.runtime_extra) if x}
    assert named <= set(optional), f"rows name extras pyproject.toml lacks: {named - set(optional)}"
    assert deps.extra_names() == list(optional)
    for extra, reqs in optional.items():  # core.deps reads pyproject.toml by pattern: as tomllib reads it
        assert deps.extras()[extra] == tuple(re.match(r"[\w.-]+", r).group(0).lower() for r in reqs), extra
    dists = {x: {re.match(r"[\w.-]+", d).group(0).lower() for d in optional[x]} for x in named}
    for extra in named:  # each resolves from pyproject.toml alone: no second table to update
        assert isinstance(deps.installed(extra), bool)
        assert set(deps.extra_modules(extra)) >= {d.replace("-", "_") for d in dists[extra]}
    # every package of a row's extra is quieted and its version recorded
    dists = set().union(*dists.values())
    assert dists <= set(deps.model_distributions())
    assert {d.replace("-", "_") for d in dists} <= set(quiet.libraries())
    assert set(package_versions(installed=True)) <= set(deps.model_distributions())
    # The install line, run by make with a stand-in python that records what pip would be asked for.
    fake, log = tmp_path / "bin", tmp_path / "pip.log"
    fake.mkdir()
    (fake / "python").write_text(f'#!/bin/sh\nif [ "$1 $2" = "-m pip" ]; then echo "$*" >> {log}; exit 0; fi\n'
                                 f'exec {sys.executable} "$@"\n')
    (fake / "python").chmod(0o755)
    res = subprocess.run(["make", "-B", f"{tmp_path}/.installed", f"BIN={fake}", f"VENV={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    install = [ln for ln in log.read_text().splitlines() if " -e " in ln]
    assert install == [f"-m pip install -q -e .[{','.join(optional)}]"], log.read_text()


def test_an_installed_package_reads_its_extras_from_its_metadata(tmp_path, monkeypatch):
    """A wheel has no pyproject.toml: the extras come from the metadata pip wrote from it."""
    from mnist_edge.core import deps

    info = tmp_path / "mnist_edge-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mnist-edge\nVersion: 0.1.0\n"
                                   "Requires-Dist: numpy>=1.24\nProvides-Extra: train\n"
                                   'Requires-Dist: torch!=2.13.0,>=2.4; extra == "train"\nProvides-Extra: tflm\n'
                                   'Requires-Dist: tflite-micro==0.dev1; extra == "tflm"\n'
                                   'Requires-Dist: ai_edge_litert==2.3.0; extra == "tflm"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(deps, "PYPROJECT", tmp_path / "absent.toml")
    deps.extras.cache_clear()
    try:
        assert deps.extras() == {"": ("numpy",), "train": ("torch",), "tflm": ("tflite-micro", "ai-edge-litert")}
        assert deps.extra_of("tflite_micro") == "tflm" and deps.extra_of("ai_edge_litert") == "tflm"
    finally:
        deps.extras.cache_clear()


@pytest.fixture
def toy_registered():
    unregister = register(TOY)
    yield TOY
    unregister()


def test_a_format_that_exists_only_here_is_exported_checked_benchmarked_evaluated_and_predicted(
        tmp_path, runner, toy_registered, monkeypatch):
    from .toy_format import LOADS

    data = write_idx_dataset(tmp_path / "data", n_train=64, n_test=32)
    art = tmp_path / "art"
    art.mkdir()
    save_random_checkpoint(art / "model.pth")
    common = ["--data-dir", str(data)]
    res = runner.invoke(cli, ["export", "--format", "toy", "--checkpoint", str(art / "model.pth"), "--out", str(art),
                              *common])
    assert res.exit_code == 0, res.output
    assert (art / "model.toy").is_file() and f"wrote {art / 'model.toy'}" in res.output

    res = runner.invoke(cli, ["check", "--artifacts", str(art), "--json", *common])
    assert res.exit_code == 0, res.output
    assert [(r["format"], r["passed"]) for r in json.loads(res.output)["results"]] == [("toy", True)]

    res = runner.invoke(cli, ["evaluate", "--model", str(art / "model.toy"), "--json", *common])
    assert res.exit_code == 0 and json.loads(res.output)["format"] == "toy", res.output

    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "blank.png")
    res = runner.invoke(cli, ["predict", "--model", str(art / "model.toy"), "--json", str(tmp_path / "blank.png")])
    assert res.exit_code == 0 and json.loads(res.output)["path"].endswith("blank.png"), res.output
    assert str(art / "model.toy") in LOADS  # every one of them went through the toy loader

    # bench runs it in a worker process of its own, which gets the row with the job
    res = runner.invoke(cli, ["bench", "--artifacts", str(art), "--formats", "toy", "--batch-sizes", "1",
                              "--threads", "1", "--min-time", "0.02", "--rounds", "2", "--json", *common])
    assert res.exit_code == 0, res.output
    assert [(r["format"], r["batch_size"]) for r in json.loads(res.stdout)["results"]] == [("toy", 1)]


# --- the import contracts -------------------------------------------------------------------------

def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.is_file():
        pytest.skip("import-linter is not installed (it comes with mnist-edge[dev])")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold_and_catch_a_torch_import_in_the_edge_side_and_an_upward_import(tmp_path):
    res = _lint_imports(ROOT)
    assert res.returncode == 0 and "broken" not in res.stdout.lower().replace("0 broken", ""), res.stdout
    assert "Layers: cli > verify > pytorch > quant > edge > core KEPT" in res.stdout, res.stdout
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "mnist_edge", copy / "mnist_edge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    predict = copy / "mnist_edge" / "edge" / "predict.py"
    predict.write_text(predict.read_text() + "\nimport torch  # a deliberate mistake\n")
    models = copy / "mnist_edge" / "pytorch" / "models.py"  # the torch side reaching up into verification
    models.write_text(models.read_text() + "\nimport mnist_edge.verify.parity  # a deliberate mistake\n")
    res = _lint_imports(copy)
    assert res.returncode != 0
    assert "The edge side never imports torch, onnx, matplotlib or the torch side BROKEN" in res.stdout, res.stdout
    assert "mnist_edge.edge.predict -> torch" in res.stdout
    assert "Layers: cli > verify > pytorch > quant > edge > core BROKEN" in res.stdout, res.stdout
    assert "mnist_edge.pytorch.models -> mnist_edge.verify.parity" in res.stdout


# --- packaging ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="building the wheel needs `build` (it comes with mnist-edge[dev])")
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "mnist-edge"  # a clean copy: no build/ or egg-info of the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "artifacts", "build", "*.egg-info",
                                                             "__pycache__", "node_modules", "data"))
    res = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return next(out.glob("mnist_edge-*.whl"))


def test_the_wheel_holds_every_subpackage_the_page_and_the_shipped_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "mnist_edge").rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names
    for asset in ("mnist_edge/edge/static/index.html", "mnist_edge/edge/assets/model.onnx",
                  "mnist_edge/edge/assets/model.json", "mnist_edge/core/archs_measured.json"):
        assert asset in names


def test_the_wheel_without_extras_predicts_without_torch(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    from PIL import Image, ImageDraw

    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).line([(100, 30), (100, 170)], fill=0, width=18)
    img.save(tmp_path / "one.png")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mnist_edge.cli import main\n"
            f"sys.argv = ['mnist-edge', 'predict', {str(tmp_path / 'one.png')!r}]\n"
            "main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{tmp_path / 'one.png'}: 1 ("), res.stdout


# --- files ------------------------------------------------------------------------------------------

def test_a_write_removes_the_temporaries_a_killed_run_left_but_not_a_running_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.onnx.{dead.pid}.abc123.onnx.tmp"
    live = tmp_path / f".model.onnx.{os.getppid()}.def456.onnx.tmp"  # a concurrent export, still running
    other = tmp_path / f".bench.json.{dead.pid}.x.tmp"  # another file's: not this write's business
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    write_bytes(tmp_path / "model.onnx", b"new")
    assert (tmp_path / "model.onnx").read_bytes() == b"new"
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.parametrize("module", ["mnist_edge", "mnist_edge.cli"])
def test_python_dash_m_runs_the_command(module):
    res = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "mnist-edge, version 0.1.0", res.stdout + res.stderr


def test_models_lists_the_architectures_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from click.testing import CliRunner\nfrom mnist_edge.cli import cli\n"
            "r = CliRunner().invoke(cli, ['models'])\nprint(r.exit_code); print(r.output)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = res.stdout.splitlines()
    assert lines[0] == "0", res.stdout + res.stderr
    spec = ARCH_SPECS["edgenet"]  # its counts are pinned in test_train
    assert any(ln.startswith("edgenet") and f"{spec.params:,}" in ln and f"{spec.macs / 1e6:.2f}M" in ln
               for ln in lines)


def test_info_calls_only_the_shipped_file_the_shipped_model(tmp_path, runner):
    from mnist_edge.edge.predict import shipped_model_path

    shipped = shipped_model_path()
    copy = tmp_path / "model.onnx"
    shutil.copy(shipped, copy)
    shutil.copy(shipped.with_suffix(".json"), copy.with_suffix(".json"))  # a look-alike beside it
    res = runner.invoke(cli, ["info", "--model", str(copy)])
    assert res.exit_code == 0 and "shipped" not in res.output, res.output
    res = runner.invoke(cli, ["info", "--model", str(shipped)])
    assert res.exit_code == 0 and "the default model of mnist-edge" in res.output, res.output
    assert formats.format_of(copy).name == "onnx"
