"""`mnist-edge models`: the recorded footprints and runs, the --fits filter, and the tool that records them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_edge.cli import cli
from mnist_edge.core import archs
from mnist_edge.core.archs import ARCH_SPECS, Footprint, Limits, Measured, TrainingRun
from mnist_edge.core.settings import DEFAULT_ARCH

ROOT = Path(__file__).resolve().parents[1]


def _fp(core: str, flash: int | None, ram: int | None, instructions: int | None = 1_000_000, fits: bool = True,
        c_model: bool = True) -> Footprint:
    return Footprint(core, "board-" + core, fits, flash, ram, instructions, instructions, instructions, "gcc",
                     "2026-12-06", (0, 1), c_model=c_model)


def _run(seed: int, acc: float, cpu: str = "AMD EPYC, AVX2 only", date: str = "2026-12-05") -> TrainingRun:
    return TrainingRun(seed, acc, "fp32", 300.0, date, cpu)


# a made-up record set: edgenet 107 KB / 11 KB, conv2pool-fc2 35 KB / 5.4 KB, lenet-dropout 418 KB / 12 KB;
# conv2pool-fc2 also on a Cortex-M0 where it is smaller, lenet-dropout not fitting one; conv3-flat has no C
# model; conv3pool-fc3 nothing recorded
MADE_UP = {
    "edgenet": Measured("edgenet", {"cortex-m4": _fp("cortex-m4", 109_784, 11_368, 8_494_450)},
                        (_run(0, 0.9971), _run(1, 0.9973), _run(2, 0.9968))),
    "conv2pool-fc2": Measured("conv2pool-fc2", {"cortex-m4": _fp("cortex-m4", 35_824, 5_520),
                                                "cortex-m0": _fp("cortex-m0", 31_000, 5_400, 4_200_000)},
                              (_run(0, 0.9902),)),
    "lenet-dropout": Measured("lenet-dropout", {"cortex-m4": _fp("cortex-m4", 427_660, 12_740),
                                                "cortex-m0": _fp("cortex-m0", 420_000, 12_000, None, fits=False)}),
    "conv3-flat": Measured("conv3-flat", {"cortex-m4": _fp("cortex-m4", None, None, None, False, c_model=False)},
                           (_run(0, 0.9930),)),
}


def test_the_recorded_file_parses_into_the_dataclasses_and_names_only_known_architectures():
    measured = archs.load_measured()
    assert measured, f"{archs.MEASURED_FILE} holds no architecture"
    assert set(measured) <= set(ARCH_SPECS), set(measured) - set(ARCH_SPECS)
    for name, m in measured.items():
        assert isinstance(m, Measured) and m.arch == name
        for core, f in m.footprints.items():
            assert isinstance(f, Footprint) and f.core == core and f.date and f.seeds
            if f.fits:  # a measured build: sizes and counts in a sane order for a 28x28 CNN
                assert 1_000 < f.ram_bytes < f.flash_bytes
                assert f.instructions_min <= f.instructions <= f.instructions_max
        assert all(isinstance(r, TrainingRun) and 0.0 <= r.test_acc <= 1.0 for r in m.runs)
    # the default is measured on the Cortex-M4 and fits its 4 MB board
    m4 = measured[DEFAULT_ARCH].footprints["cortex-m4"]
    assert m4.fits and m4.board == "mps2-an386" and 50_000 < m4.flash_bytes < 200_000


def test_the_file_round_trips_and_a_broken_one_is_one_line(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(archs.measured_to_json(MADE_UP)))
    assert archs.load_measured(path) == MADE_UP
    assert archs.load_measured(tmp_path / "absent.json") == {}
    path.write_text('{"archs": {"edgenet": {"footprint": {"cortex-m4": {"fits": true}}}}}')  # no board
    with pytest.raises(archs.MeasuredFileError, match=r"m\.json: not a measurements file \(KeyError"):
        archs.load_measured(path)
    path.write_text("{")
    with pytest.raises(archs.MeasuredFileError, match=r"m\.json: not JSON"):
        archs.load_measured(path)


@pytest.mark.parametrize(("text", "want"), [
    ("flash=32K,ram=8K", Limits(32 * 1024, 8 * 1024)),
    ("ram=8k", Limits(None, 8192)),
    (" FLASH = 1.5M ", Limits(1536 * 1024, None)),
    ("flash=4096,ram=512B", Limits(4096, 512)),
])
def test_fits_parses_sizes_in_bytes_k_and_m(text, want):
    assert archs.parse_limits(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("flash=32Q", "bad size '32Q'"),
    ("flash=", "bad size ''"),
    ("rom=32K", "bad limit 'rom=32K'"),
    ("32K", "bad limit '32K'"),
    ("flash=32K,flash=64K", "flash is given twice"),
    ("", "bad limit ''"),
])
def test_fits_refuses_bad_input_saying_what(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        archs.parse_limits(text)


def test_fits_lists_what_fits_best_accuracy_first_and_the_unmeasured_last():
    everything = [r["name"] for r in archs.rows(MADE_UP, Limits())]  # no limit: every measured build
    assert everything == ["edgenet", "conv2pool-fc2", "lenet-dropout"]  # accuracy 99.71, 99.02, none
    assert [r["name"] for r in archs.rows(MADE_UP, Limits(flash=128 * 1024, ram=12 * 1024))] == \
           ["edgenet", "conv2pool-fc2"]
    assert [r["name"] for r in archs.rows(MADE_UP, Limits(flash=36 * 1024, ram=8 * 1024))] == ["conv2pool-fc2"]
    # conv2pool-fc2's Cortex-M0 build would fit 32 KB, its Cortex-M4 build would not: the largest decides
    assert archs.rows(MADE_UP, Limits(flash=32 * 1024, ram=8 * 1024)) == []
    assert [r["name"] for r in archs.rows(MADE_UP, Limits(ram=11_000))] == ["conv2pool-fc2"]
    assert [r["name"] for r in archs.rows(MADE_UP, Limits(ram=12_740))] == \
           ["edgenet", "conv2pool-fc2", "lenet-dropout"]  # the limit itself fits
    assert archs.rows(MADE_UP, Limits(flash=16 * 1024)) == []
    # without a filter: every architecture, in the table's order
    assert [r["name"] for r in archs.rows(MADE_UP)] == list(ARCH_SPECS)


def test_rows_give_the_largest_build_and_the_mean_over_seeds():
    by = {r["name"]: r for r in archs.rows(MADE_UP)}
    assert by["conv2pool-fc2"]["largest"] == {"core": "cortex-m4", "flash_bytes": 35_824, "ram_bytes": 5_520}
    assert by["edgenet"]["accuracy"] == {"mean": pytest.approx(0.99706667), "seeds": 3}
    assert by["edgenet"]["default"] and not by["conv2pool-fc2"]["default"]
    assert by["conv3pool-fc3"]["largest"] is None and by["conv3pool-fc3"]["accuracy"] is None


def test_the_table_says_not_measured_where_nothing_is_recorded():
    lines = archs.table(MADE_UP).splitlines()
    row = {ln.split()[0]: ln for ln in lines[1:len(ARCH_SPECS) + 1]}
    assert row["edgenet"].startswith("edgenet *")  # the default, marked
    assert "107.2K" in row["edgenet"] and "11.1K" in row["edgenet"] and "cortex-m4" in row["edgenet"]
    assert "8.49M" in row["edgenet"] and "99.71% (3)" in row["edgenet"]
    assert "2026-12-05, AMD EPYC, AVX2 only" in row["edgenet"]
    # M0 not measured for edgenet; conv2pool-fc2's largest build is the M4's, and its M0 count is shown
    assert row["edgenet"].count(archs.NOT_MEASURED) == 1
    assert "35.0K" in row["conv2pool-fc2"] and "cortex-m4" in row["conv2pool-fc2"] and "4.20M" in row["conv2pool-fc2"]
    assert row["conv3pool-fc3"].count(archs.NOT_MEASURED) == 4  # size, M0, M4, accuracy
    assert "does not fit" in row["lenet-dropout"] and "417.6K" in row["lenet-dropout"]  # the M4 build: fits
    assert "no C model" in row["conv3-flat"] and "99.30% (1)" in row["conv3-flat"]
    assert archs.table({}, Limits(flash=1)).splitlines()[1] == "(no measured architecture fits)"


def test_runs_on_several_cpus_say_so():
    m = {"edgenet": Measured("edgenet", {}, (_run(0, 0.99, "A", "2026-12-01"), _run(1, 0.99, "B", "2026-12-03")))}
    assert "2026-12-03, several CPUs" in archs.table(m).splitlines()[1]


def test_cli_fits_and_json(runner, monkeypatch):
    monkeypatch.setattr(archs, "load_measured", lambda path=archs.MEASURED_FILE: MADE_UP)
    res = runner.invoke(cli, ["models", "--fits", "flash=128K,ram=12K"])
    assert res.exit_code == 0, res.output
    names = [ln.split()[0] for ln in res.output.splitlines()[1:3]]
    assert names == ["edgenet", "conv2pool-fc2"] and "lenet-dropout  " not in res.output.splitlines()[3]
    res = runner.invoke(cli, ["models", "--fits", "ram=8K", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["fits"] == {"flash_bytes": None, "ram_bytes": 8192}
    assert [a["name"] for a in got["archs"]] == ["conv2pool-fc2"]
    assert got["archs"][0]["footprint"]["cortex-m0"]["instructions"] == 4_200_000


@pytest.mark.parametrize("fits", ["flash=32X", "rom=1K", "flash"])
def test_cli_refuses_a_bad_fits_with_a_usage_error(runner, fits):
    res = runner.invoke(cli, ["models", "--fits", fits])
    assert res.exit_code == 2 and "Invalid value for '--fits'" in res.output and "Traceback" not in res.output


def test_cli_names_a_broken_file_in_one_line(runner, monkeypatch, tmp_path):
    bad = tmp_path / "archs_measured.json"
    bad.write_text("[1, 2]")
    monkeypatch.setattr(archs, "MEASURED_FILE", bad)
    monkeypatch.setattr(archs.load_measured, "__defaults__", (bad,))
    res = runner.invoke(cli, ["models"])
    assert res.exit_code == 1 and f"{bad}: not a measurements file" in res.output, res.output


def test_models_with_fits_runs_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
            "from click.testing import CliRunner\nfrom mnist_edge.cli import cli\n"
            "r = CliRunner().invoke(cli, ['models', '--fits', 'flash=4M'])\nprint(r.exit_code); print(r.output)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.stdout.splitlines()[0] == "0", res.stdout + res.stderr
    assert any(ln.startswith(f"{DEFAULT_ARCH} *") for ln in res.stdout.splitlines())


# --- the tool that records them ----------------------------------------------------------------------------

def _metrics(folder: Path, arch: str = "conv2pool-fc2", seed: int = 3, acc: float = 0.991, **extra) -> Path:
    folder.mkdir(parents=True)
    m = {"arch": arch, "test_acc": acc, "config": {"seed": seed, "precision": "auto"},
         "epochs": [{"seconds": 10.25}, {"seconds": 11.0}], "date": "2026-12-06T16:38:46+00:00",
         "precision": "bf16 autocast", "cpu": {"model": "AMD EPYC", "kind": "AVX-512 VNNI + BF16"}, **extra}
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder / "metrics.json"


def test_record_runs_reads_metrics_and_check_and_replaces_a_seed(tmp_path):
    from mnist_edge.verify.archs import record_runs

    out = tmp_path / "measured.json"
    a = _metrics(tmp_path / "a")
    (tmp_path / "a" / "check.json").write_text(json.dumps({"results": [{"format": "onnx", "accuracy": 0.991},
                                                                       {"format": "onnx-int8", "accuracy": 0.9905}]}))
    b = _metrics(tmp_path / "b", seed=4, acc=0.989)
    record_runs([a, b], out)
    runs = archs.load_measured(out)["conv2pool-fc2"].runs
    assert runs[0] == TrainingRun(3, 0.991, "bf16 autocast", 21.2, "2026-12-06", "AMD EPYC, AVX-512 VNNI + BF16",
                                  0.9905)
    assert runs[1].seed == 4 and runs[1].int8_acc is None
    record_runs([_metrics(tmp_path / "c", seed=4, acc=0.993)], out)  # seed 4 again: replaced, seed 3 kept
    m = archs.load_measured(out)["conv2pool-fc2"]
    assert [(r.seed, r.test_acc) for r in m.runs] == [(3, 0.991), (4, 0.993)] and m.accuracy == pytest.approx(0.992)


def test_record_runs_refuses_an_unknown_arch_or_a_broken_file_before_writing(tmp_path):
    from mnist_edge.core.errors import MnistEdgeError
    from mnist_edge.verify.archs import record_runs

    out = tmp_path / "measured.json"
    good = _metrics(tmp_path / "good")
    with pytest.raises(MnistEdgeError, match=r"architecture 'tiny-x' has no ArchSpec"):
        record_runs([good, _metrics(tmp_path / "x", arch="tiny-x")], out)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text('{"arch": "edgenet"}')
    with pytest.raises(MnistEdgeError, match=r"bad.metrics\.json: not a metrics\.json of mnist-edge train"):
        record_runs([good, tmp_path / "bad" / "metrics.json"], out)
    assert not out.exists()


def test_the_tool_refuses_an_unknown_arch_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "measure_archs.py"), "no-such-net",
                          "--out", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 1 and res.stderr.strip().splitlines()[-1].startswith("error: unknown architecture "
                                                                                  "'no-such-net'"), res.stderr


# --- the footprint measured now against the one recorded ---------------------------------------------------

def _toolchain_problem() -> str | None:
    from mnist_edge.edge.runtimes import cortex_m

    return cortex_m.toolchain_problem()


needs_toolchain = pytest.mark.skipif(_toolchain_problem() is not None,
                                     reason=f"Cortex-M toolchain: {_toolchain_problem()}")
SMALL_ARCH = "conv2pool-fc2"  # the smallest recorded: one compile and a 1.6 M-instruction run


@pytest.fixture(scope="module")
def small_c(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from mnist_edge.verify.archs import int8_c_model

    return int8_c_model(SMALL_ARCH, tmp_path_factory.mktemp("small"), seed=0)


@needs_toolchain
def test_the_recorded_footprint_is_what_the_tool_measures_now(small_c, tmp_path, monkeypatch):
    from mnist_edge.verify.archs import measure_one

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    recorded = archs.load_measured()[SMALL_ARCH].footprints["cortex-m4"]
    now = measure_one(small_c, "cortex-m4", "2026-12-06", 0)
    assert now.fits and (now.flash_bytes, now.ram_bytes) == (recorded.flash_bytes, recorded.ram_bytes)
    assert recorded.instructions_min <= now.instructions_min <= now.instructions_max <= recorded.instructions_max
    assert 0 in recorded.seeds and now.compiler == recorded.compiler


@needs_toolchain
def test_a_board_too_small_is_does_not_fit_with_what_it_would_need(small_c, tmp_path, monkeypatch):
    from mnist_edge.edge.runtimes import cortex_m
    from mnist_edge.verify.archs import measure_one

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    m3 = cortex_m.BOARDS["cortex-m3"]
    tiny = cortex_m.Board("tiny-m3", m3.machine, (*m3.flags, "-Wl,--defsym=FLASH_SIZE=16K,--defsym=RAM_SIZE=4K"),
                          "a Cortex-M3 with 16 KB of flash and 4 KB of RAM")
    monkeypatch.setitem(cortex_m.BOARDS, "tiny-m3", tiny)
    f = measure_one(small_c, "tiny-m3", "2026-12-06", 0)
    assert not f.fits and f.c_model and f.instructions is None
    # the model itself (36 KB of flash, 3.5 KB of static RAM) does not fit 16 KB of flash either
    assert f.flash_bytes > 16 * 1024 and 0 < f.ram_bytes
    assert f.why == (f"its firmware does not link: the model needs {f.flash_bytes} B of flash and {f.ram_bytes} B "
                     f"of static RAM; {m3.machine} has 16K of flash, 4K of RAM")
    assert not Measured(SMALL_ARCH, {"tiny-m3": f}).fits(Limits())
