"""`predict` and `info`: the shipped model, JSON shape, stdin, top-k, bad inputs, and no torch on the way."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_edge.cli import cli
from mnist_edge.edge.predict import shipped_model_path

from .conftest import needs_real_data

SHIPPED = shipped_model_path()


def draw_digit(path: Path, digit: str, size=(200, 240), ink=(20, 20, 20), paper=(245, 245, 240)) -> Path:
    """A dark-ink-on-paper drawing of 0, 1 or 7, the way a person would hand it over."""
    img = Image.new("RGB", size, paper)
    d = ImageDraw.Draw(img)
    w, h = size
    if digit == "1":
        d.line([(w * 0.45, h * 0.25), (w * 0.55, h * 0.15), (w * 0.55, h * 0.85)], fill=ink, width=14)
    elif digit == "7":
        d.line([(w * 0.25, h * 0.2), (w * 0.75, h * 0.2), (w * 0.4, h * 0.85)], fill=ink, width=14)
    elif digit == "0":
        d.ellipse([w * 0.25, h * 0.15, w * 0.75, h * 0.85], outline=ink, width=14)
    img.save(path)
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("digits")
    return {d: draw_digit(root / f"digit{d}.png", d) for d in "017"}


def test_shipped_model_is_present_small_and_loadable():
    from mnist_edge.core.formats import load_runtime

    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 2 * 1024 * 1024
    rt = load_runtime(SHIPPED)
    assert rt.format == "onnx" and rt.metadata.test_acc >= 0.996
    recorded = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert recorded["test_acc"] == rt.metadata.test_acc and "seed" in recorded and "versions" in recorded


def test_predict_drawn_digits_with_the_shipped_model(runner, digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no artifacts/ here: the shipped model is the default
    res = runner.invoke(cli, ["predict", *map(str, digits.values())])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    for (d, path), line in zip(digits.items(), lines, strict=True):  # one line per image, none missing
        assert line.startswith(f"{path}: {d} ("), line


def test_json_lines_shape(runner, digits):
    res = runner.invoke(cli, ["predict", "--model", str(SHIPPED), "--json", str(digits["7"]), str(digits["1"])])
    assert res.exit_code == 0
    rows = [json.loads(x) for x in res.output.strip().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {"path", "digit", "label", "confidence", "probabilities"}
        assert len(row["probabilities"]) == 10 and abs(sum(row["probabilities"]) - 1) < 1e-4
        assert row["label"] == str(row["digit"]) and row["confidence"] == max(row["probabilities"])
    assert rows[0]["digit"] == 7 and rows[0]["path"] == str(digits["7"])


def test_top_k_lists_next_guesses(runner, digits):
    res = runner.invoke(cli, ["predict", "--model", str(SHIPPED), "--top-k", "3", str(digits["0"])])
    line = res.output.strip()
    assert res.exit_code == 0 and "next: " in line
    assert len(line.split("next: ")[1].split(", ")) == 2


def test_stdin(runner, digits):
    res = runner.invoke(cli, ["predict", "--model", str(SHIPPED), "--json", "-"],
                        input=digits["1"].read_bytes())
    row = json.loads(res.output)
    assert res.exit_code == 0 and row["path"] == "-" and row["digit"] == 1


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    (tmp / "folder").mkdir()
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "notes.png").write_text("this is not an image")
    buf = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buf, "PNG")
    (tmp / "truncated.png").write_bytes(buf.getvalue()[:40])
    (tmp / "photo.bmpx").write_bytes(b"\x00\x01\x02" * 10)
    return {"missing": tmp / "nope.png", "folder": tmp / "folder", "empty": tmp / "empty.png",
            "not an image": tmp / "notes.png", "truncated": tmp / "truncated.png", "unknown": tmp / "photo.bmpx"}


def test_bad_inputs_one_line_each_rest_still_predicted(runner, digits, tmp_path):
    bad = _bad_inputs(tmp_path)
    args = [str(digits["7"]), *map(str, bad.values()), str(digits["1"])]
    res = runner.invoke(cli, ["predict", "--model", str(SHIPPED), *args])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    out_lines = [ln for ln in res.stdout.strip().splitlines()]
    err_lines = [ln for ln in res.stderr.strip().splitlines()]
    assert out_lines[0].startswith(f"{digits['7']}: 7") and out_lines[-1].startswith(f"{digits['1']}: 1")
    assert len(err_lines) == len(bad)
    for p, line in zip(bad.values(), err_lines, strict=True):
        assert line.startswith("Error: ") and str(p) in line


def test_decompression_bomb_is_refused_before_decoding(runner, tmp_path):
    from mnist_edge.edge.preprocess import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) + 100
    big = tmp_path / "bomb.png"
    Image.new("1", (side, side), 0).save(big, optimize=True)  # tiny file, huge image
    assert big.stat().st_size < 2_000_000
    res = runner.invoke(cli, ["predict", "--model", str(SHIPPED), str(big)])
    assert res.exit_code == 1 and str(big) in res.stderr and "Traceback" not in res.output


BAD_MODELS = {"missing": None, "corrupt": b"\x08\x01garbage" * 50, "foreign": "foreign-onnx", "malicious": "evil"}


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mnist-edge-predict-pwned",))


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_files_are_one_line(runner, digits, tmp_path, case):
    content = BAD_MODELS[case]
    model = tmp_path / ("m.pth" if case == "malicious" else "m.onnx")
    if isinstance(content, bytes):
        model.write_bytes(content)
    elif content == "foreign-onnx":
        import onnx
        from onnx import TensorProto, helper

        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 28, 28])])
        onnx.save(helper.make_model(g), str(model))
    elif content == "evil":
        model.write_bytes(pickle.dumps({"x": _Evil()}, protocol=2))
    res = runner.invoke(cli, ["predict", "--model", str(model), str(digits["1"])])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and str(model) in res.output and "Traceback" not in res.output
    assert not os.path.exists("/tmp/mnist-edge-predict-pwned")


def test_predict_never_imports_torch(digits, tmp_path):
    """A process where `import torch` fails must still predict with an ONNX model."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mnist_edge.cli import main\n"
            f"sys.argv = ['mnist-edge', 'predict', '--json', {str(digits['7'])!r}]\n"
            "main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["digit"] == 7


def test_commands_that_need_torch_say_which_extra(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mnist_edge.cli import main\n"
            "sys.argv = ['mnist-edge', 'train', '--epochs', '1']\n"
            "main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 1
    assert "install mnist-edge[train]" in res.stderr and "Traceback" not in res.stderr


def test_info_of_the_shipped_model(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli, ["info"])
    assert res.exit_code == 0 and "edgenet" in res.output and "onnx" in res.output and "shipped" in res.output
    d = json.loads(runner.invoke(cli, ["info", "--json"]).output)
    assert d["format"] == "onnx" and d["size_bytes"] == SHIPPED.stat().st_size
    assert d["normalization"] == {"mean": 0.1307, "std": 0.3081} and d["test_acc"] >= 0.996


def test_help_of_every_command_without_importing_torch():
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from mnist_edge.cli import cli\n"
            "r = CliRunner()\n"
            "names = sorted(cli.list_commands(None))\n"
            "for n in [None, *names]:\n"
            "    res = r.invoke(cli, ([n] if n else []) + ['--help'])\n"
            "    assert res.exit_code == 0 and 'Usage' in res.output, (n, res.output)\n"
            "heavy = [m for m in ('torch', 'torchvision', 'onnx', 'matplotlib', 'onnxruntime') if m in sys.modules]\n"
            "print(len(names), heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    count, heavy = res.stdout.split(" ", 1)
    assert int(count) >= 8 and heavy.strip() == "[]"


@needs_real_data
@pytest.mark.slow
def test_mnist_test_images_as_png_give_the_models_accuracy(tmp_path, runner):
    """Already-MNIST images go through preprocessing unchanged in effect."""
    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.core.scores import score

    split = load_test_split(os.environ["MNIST_EDGE_DATA"])
    rt = load_runtime(SHIPPED)
    direct = score(rt, split).logits.argmax(1)
    paths = []
    for i, img in enumerate(split.images):
        p = tmp_path / f"{i:05d}.png"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    from mnist_edge.edge.predict import predict_sources

    preds = np.array([r.digit for r in predict_sources(rt, paths)])
    acc_png = float((preds == split.labels).mean())
    acc_direct = float((direct == split.labels).mean())
    assert abs(acc_png - acc_direct) <= 0.0005, (acc_png, acc_direct)


def _photo_of(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit as a person might photograph it: dark ink on uneven, noisy paper, scaled up,
    off-centre, in colour, JPEG-compressed."""
    scale = int(rng.integers(5, 10))
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.BICUBIC)
    w, h = 28 * scale + int(rng.integers(60, 200)), 28 * scale + int(rng.integers(60, 200))
    yy, xx = np.mgrid[0:h, 0:w]
    paper = 225 + 25 * (xx / w) - 15 * (yy / h) + rng.normal(0, 4, (h, w))  # lighting gradient + grain
    page = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    ox, oy = int(rng.integers(0, w - 28 * scale)), int(rng.integers(0, h - 28 * scale))
    region = np.asarray(page.crop((ox, oy, ox + 28 * scale, oy + 28 * scale)), dtype=np.float32)
    page.paste(Image.fromarray(np.minimum(region, np.asarray(ink, np.float32)).astype(np.uint8)), (ox, oy))
    rgb = Image.merge("RGB", [page.point(lambda v, k=k: int(v * k)) for k in (1.0, 0.97, 0.9)])  # warm light
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=80)
    return Image.open(io.BytesIO(buf.getvalue()))


@needs_real_data
@pytest.mark.slow
def test_mnist_digits_photographed_on_paper_stay_accurate():
    """MNIST-derived photos: preprocessing keeps the model near its MNIST accuracy; a naive resize does not."""
    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.edge.predict import predict_arrays
    from mnist_edge.edge.preprocess import to_mnist

    split = load_test_split(os.environ["MNIST_EDGE_DATA"])
    rng = np.random.default_rng(0)
    idx = rng.choice(len(split), 500, replace=False)
    photos = [_photo_of(split.images[i], rng) for i in idx]
    rt = load_runtime(SHIPPED)
    ours = predict_arrays(rt, np.stack([to_mnist(p) for p in photos]), [""] * len(photos))
    naive = predict_arrays(rt, np.stack([np.asarray(p.convert("L").resize((28, 28), Image.BILINEAR))
                                         for p in photos]), [""] * len(photos))
    labels = split.labels[idx]
    acc_ours = float(np.mean([p.digit for p in ours] == labels))
    acc_naive = float(np.mean([p.digit for p in naive] == labels))
    print(f"MNIST-derived photos: {100 * acc_ours:.1f}% with preprocessing, {100 * acc_naive:.1f}% with a naive resize")
    assert acc_ours >= 0.98, acc_ours
    assert acc_naive <= 0.5, acc_naive
