"""Loading IDX (raw, gz, torchvision layout) and CSV data, and one clear error for each kind of bad data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.cli import cli
from mnist_edge.core import data
from mnist_edge.core.errors import DataError

from .conftest import idx_bytes, synthetic_digits, write_csv_dataset, write_idx_dataset


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_idx_layouts_load_the_same_arrays(tmp_path, gz, layout):
    root = write_idx_dataset(tmp_path / "d", n_train=40, n_test=12, gz=gz, layout=layout)
    train, test = data.load_dataset(root, allow_download=False)
    x, y = synthetic_digits(40, seed=0)
    assert train.images.dtype == np.uint8 and train.images.shape == (40, 28, 28)
    np.testing.assert_array_equal(train.images, x)
    np.testing.assert_array_equal(train.labels, y)
    assert len(test) == 12


def test_csv_loads_like_idx(tmp_path):
    train, test = data.load_dataset(write_csv_dataset(tmp_path / "csv", 20, 8), allow_download=False)
    x, y = synthetic_digits(20, seed=0)
    np.testing.assert_array_equal(train.images, x)
    np.testing.assert_array_equal(train.labels, y)
    assert test.images.shape == (8, 28, 28)


def test_env_var_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_EDGE_DATA", str(tmp_path / "x"))
    assert data.resolve_data_dir(None) == tmp_path / "x"
    assert data.resolve_data_dir("given") == Path("given")
    monkeypatch.delenv("MNIST_EDGE_DATA")
    assert data.resolve_data_dir(None) == Path("data")


def test_offline_download_failure_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "MNIST", no_network)
    with pytest.raises(DataError) as e:
        data.load_dataset(tmp_path / "empty")
    msg = str(e.value)
    assert "download failed" in msg and "MNIST_EDGE_DATA" in msg and str(tmp_path / "empty") in msg
    assert "\n" not in msg


def _corrupt(root: Path, case: str) -> Path:
    """Make one kind of bad data in a fresh synthetic dataset; returns the file the error must name."""
    tr_img = root / "train-images-idx3-ubyte.gz"
    tr_lbl = root / "train-labels-idx1-ubyte.gz"
    if case == "wrong magic":
        raw = bytearray(gzip.decompress(tr_img.read_bytes()))
        raw[2:4] = b"\x08\x01"
        tr_img.write_bytes(gzip.compress(bytes(raw)))
        return tr_img
    if case == "truncated idx":
        raw = gzip.decompress(tr_img.read_bytes())
        tr_img.write_bytes(gzip.compress(raw[: len(raw) // 2]))
        return tr_img
    if case == "truncated gzip":
        blob = tr_img.read_bytes()
        tr_img.write_bytes(blob[: len(blob) // 2])
        return tr_img
    if case == "count mismatch":
        _, y = synthetic_digits(30)
        tr_lbl.write_bytes(gzip.compress(idx_bytes(y)))
        return tr_img
    if case == "wrong image size":
        tr_img.write_bytes(gzip.compress(idx_bytes(np.zeros((512, 32, 32), np.uint8))))
        return tr_img
    if case == "label out of range":
        y = np.full(512, 11, np.uint8)
        tr_lbl.write_bytes(gzip.compress(idx_bytes(y)))
        return tr_lbl
    if case == "missing split":
        (root / "t10k-images-idx3-ubyte.gz").unlink()
        return root
    raise AssertionError(case)


IDX_CASES = ["wrong magic", "truncated idx", "truncated gzip", "count mismatch", "wrong image size",
             "label out of range", "missing split"]
EXPECTED_WORDS = {"wrong magic": "magic", "truncated idx": "truncated", "truncated gzip": "gzip",
                  "count mismatch": "labels", "wrong image size": "image size",
                  "label out of range": "out of range", "missing split": "test split is missing"}


@pytest.mark.parametrize("case", IDX_CASES)
def test_bad_idx_data_one_line_error(tmp_path, case):
    root = write_idx_dataset(tmp_path / "d")
    bad_file = _corrupt(root, case)
    with pytest.raises(DataError) as e:
        data.load_dataset(root, allow_download=False)
    msg = str(e.value)
    assert str(bad_file) in msg
    assert EXPECTED_WORDS[case] in msg
    assert "\n" not in msg


CSV_CASES = {
    "short row": (lambda row: row[:-5], "values"),
    "non-numeric": (lambda row: row[:3] + ["abc"] + row[4:], "non-numeric"),
    "pixel out of range": (lambda row: row[:3] + ["300"] + row[4:], "out of range"),
    "label out of range": (lambda row: ["12"] + row[1:], "label 12"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_csv_row_names_file_and_line(tmp_path, case):
    root = write_csv_dataset(tmp_path / "csv", 10, 4)
    f = root / "mnist_train.csv"
    lines = f.read_text().splitlines()
    mutate, word = CSV_CASES[case]
    lines[3] = ",".join(mutate(lines[3].split(",")))
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        data.load_dataset(root, allow_download=False)
    msg = str(e.value)
    assert str(f) in msg and "line 4" in msg and word in msg


def test_csv_without_header_is_refused(tmp_path):
    root = write_csv_dataset(tmp_path / "csv", 5, 5)
    f = root / "mnist_test.csv"
    f.write_text("\n".join(f.read_text().splitlines()[1:]))
    with pytest.raises(DataError, match="header"):
        data.load_dataset(root, allow_download=False)


@pytest.mark.parametrize("case", ["wrong magic", "count mismatch", "missing split"])
def test_cli_bad_data_is_one_line_no_traceback(tmp_path, runner, case):
    root = write_idx_dataset(tmp_path / "d")
    _corrupt(root, case)
    res = runner.invoke(cli, ["train", "--data-dir", str(root), "--epochs", "1",
                              "--out", str(tmp_path / "out"), "--no-plots"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and str(root) in lines[-1]
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "model.pth").exists()
