"""The `mnist-edge` command line: parses options, calls one module per job, prints results.

Heavy modules (torch, onnx, matplotlib) are imported inside the commands that need them, so
`--help` and the torch-free commands (predict with ONNX, info, serve) start fast.
"""

from __future__ import annotations

import json
import sys
import warnings

import click

from . import __version__
from .errors import MnistEdgeError

DEFAULT_ARTIFACTS = "artifacts"


class _UserError(click.ClickException):
    """A MnistEdgeError as Click prints it: 'Error: <one line>' on stderr, with its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MnistEdgeError as e:
            raise _UserError(str(e), e.exit_code) from None
        except ImportError as e:  # a module-level `import torch` of a command whose extra is missing
            from .deps import missing_extra

            missing = missing_extra(e)
            if missing is None:
                raise
            raise _UserError(str(missing), missing.exit_code) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


def _quiet_warnings() -> None:
    # torch.jit / torch.ao.quantization / the ONNX exporter are chatty and deprecated in recent
    # torch; what they say is not actionable for a user of this tool.
    for mod in (r"torch(\..*)?", r"onnx(\..*)?", r"onnxscript(\..*)?", r"onnxruntime(\..*)?",
                r"torchvision(\..*)?", r"onnx_ir(\..*)?", r"copyreg"):
        warnings.filterwarnings("ignore", module=mod)


data_dir_option = click.option(
    "--data-dir", envvar="MNIST_EDGE_DATA", default=None, show_envvar=True,
    help="Folder with the dataset (IDX files, raw or .gz, or mnist_train/test.csv). "
         "Default: data/ (downloaded there if empty).")
dataset_option = click.option(
    "--dataset", type=click.Choice(["mnist", "fashion-mnist"]), default="mnist", show_default=True,
    help="Which 28x28 10-class dataset (class names travel with the model).")
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-edge")
def cli() -> None:
    """Train a small MNIST CNN, export it (TorchScript, ONNX, int8), prove parity, benchmark, predict."""
    _quiet_warnings()


@cli.command()
@click.option("--epochs", type=int, default=None, help="Epochs to train. [default: 20]")
@click.option("--lr", type=float, default=None, help="Peak learning rate (one-cycle). [default: 0.02]")
@click.option("--batch-size", type=int, default=None, help="Images per step. [default: 256]")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="AdamW, or SGD with momentum 0.9.")
@click.option("--arch", default=None, help="Architecture (see `mnist-edge models`). [default: edgenet]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed: same seed, same weights (CPU).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="bf16 autocast in training where the hardware has native bf16 (auto), or not.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random rotation, scale and shift of each training image.")
@click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_ARTIFACTS, show_default=True,
              help="Where model.pth, metrics.json and the plots go.")
@click.option("--resume", is_flag=True, help="Continue the run whose checkpoint is in --out.")
@click.option("--subset", type=click.IntRange(min=1), default=None,
              help="Train on the first N training images only (quick trials).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads. [default: all cores]")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write the figures at the end.")
@data_dir_option
@dataset_option
def train(**opts) -> None:
    """Train a model; writes model.pth, metrics.json and the figures into --out."""
    from .train import TrainConfig
    from .train import train as run_train

    defaults = TrainConfig()
    cfg = TrainConfig(**{k: (getattr(defaults, k) if v is None and k in ("epochs", "lr", "batch_size", "arch") else v)
                         for k, v in opts.items()})
    res = run_train(cfg)
    click.echo(f"test accuracy {100 * res.test_acc:.2f}% (loss {res.test_loss:.4f}) after "
               f"{len(res.history)} epochs; {res.seconds:.0f} s of training")
    click.echo(f"wrote {res.checkpoint} and metrics.json{', figures' if cfg.plots else ''} in {cfg.out}/")


@cli.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=True), default=f"{DEFAULT_ARTIFACTS}/model.pth",
              show_default=True, help="A model.pth checkpoint or an exported model (.ts, .onnx).")
@data_dir_option
@json_option
def evaluate(model_path: str, data_dir: str | None, as_json: bool) -> None:
    """Test loss and accuracy of a saved model on its dataset's test split."""
    from .data import load_test_split
    from .runtimes import evaluate_runtime, load_runtime

    rt = load_runtime(model_path)
    split = load_test_split(data_dir, rt.metadata.dataset)
    res = evaluate_runtime(rt, split)
    if as_json:
        click.echo(json.dumps({"model": model_path, "format": rt.format, "test_acc": res.accuracy,
                               "test_loss": res.loss, "images": len(split)}))
    else:
        correct = int(round(res.accuracy * len(split)))
        click.echo(f"{model_path} ({rt.format}): test accuracy {100 * res.accuracy:.2f}% "
                   f"({correct}/{len(split)}), loss {res.loss:.4f}")


def _tolerance_options(f):
    from .tolerances import FP32_MAX_ABS_DIFF, INT8_MAX_ACCURACY_DROP, INT8_MIN_AGREEMENT

    f = click.option("--max-acc-drop-int8", type=float, default=INT8_MAX_ACCURACY_DROP, show_default=True,
                     help="Largest accuracy drop of an int8 format, as a fraction.")(f)
    f = click.option("--min-agreement-int8", type=float, default=INT8_MIN_AGREEMENT, show_default=True,
                     help="Smallest top-1 agreement of an int8 format with PyTorch.")(f)
    f = click.option("--atol", type=float, default=FP32_MAX_ABS_DIFF, show_default=True,
                     help="Largest |logit difference| of an fp32 format.")(f)
    return f


def _tolerances(atol: float, min_agreement_int8: float, max_acc_drop_int8: float):
    from .tolerances import Tolerances

    return Tolerances(fp32_max_abs_diff=atol, int8_min_agreement=min_agreement_int8,
                      int8_max_accuracy_drop=max_acc_drop_int8)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["torchscript", "onnx", "all"]), default="all",
              show_default=True, help="Which format(s) to write.")
@click.option("--quantize", is_flag=True, help="Also write the int8 twin of each format.")
@click.option("--quantize-mode", type=click.Choice(["static", "dynamic"]), default="static",
              show_default=True, help="ONNX int8: static QDQ (calibrated) or dynamic (MatMul/Gemm only).")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=500, show_default=True,
              help="Training images used to calibrate static quantization.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(), default=f"{DEFAULT_ARTIFACTS}/model.pth",
              show_default=True, help="The trained model.pth to export.")
@click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_ARTIFACTS, show_default=True)
@data_dir_option
@_tolerance_options
def export(fmt, quantize, quantize_mode, calibration_samples, checkpoint_path, out, data_dir,
           atol, min_agreement_int8, max_acc_drop_int8) -> None:
    """Export to TorchScript and/or ONNX (optionally int8); each file is verified before it is kept."""
    from pathlib import Path

    from .export import export_models

    def report(e) -> None:
        p = e.parity
        click.echo(f"wrote {e.path} ({e.size_bytes / 1024:.0f} KB): max |Δlogit| {p.max_abs_diff:.1e}, "
                   f"top-1 agreement {100 * p.top1_agreement:.2f}%, accuracy {100 * p.accuracy:.2f}% "
                   f"({100 * p.accuracy_delta:+.2f})")

    export_models(Path(checkpoint_path), Path(out), fmt, quantize, quantize_mode, calibration_samples,
                  data_dir, _tolerances(atol, min_agreement_int8, max_acc_drop_int8), on_done=report)


@cli.command()
@click.option("--artifacts", type=click.Path(file_okay=False), default=DEFAULT_ARTIFACTS, show_default=True,
              help="Folder with the exported models (and model.pth, the reference).")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(), default=None,
              help="The reference checkpoint. [default: ARTIFACTS/model.pth]")
@data_dir_option
@json_option
@_tolerance_options
def check(artifacts, checkpoint_path, data_dir, as_json, atol, min_agreement_int8, max_acc_drop_int8) -> None:
    """Parity of every exported model with PyTorch on the whole test set (exit 1 if any fails)."""
    from pathlib import Path

    from .data import load_test_split
    from .errors import MnistEdgeError
    from .parity import check_folder, present_formats, reference, table
    from .runtimes import load_runtime

    artifacts = Path(artifacts)
    if not present_formats(artifacts):
        raise MnistEdgeError(f"{artifacts}: no exported models to check (run `mnist-edge export`)")
    ref_rt = load_runtime(checkpoint_path or artifacts / "model.pth")
    ref = reference(ref_rt, load_test_split(data_dir, ref_rt.metadata.dataset))
    report = check_folder(ref, artifacts, _tolerances(atol, min_agreement_int8, max_acc_drop_int8))
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(f"parity against {ref_rt.path} on {len(ref.labels):,} test images "
                   f"(batches of {', '.join(map(str, report.results[0].batch_sizes))}) and 4 edge inputs")
        click.echo(table(report.results, report.reference_accuracy))
        click.echo("all formats pass" if report.passed else "some formats FAIL")
    if not report.passed:
        sys.exit(1)


@cli.command()
@click.option("--artifacts", type=click.Path(file_okay=False), default=DEFAULT_ARTIFACTS, show_default=True,
              help="Folder with model.pth and the exported models; bench.json, .md and .png go here.")
@click.option("--formats", default=None,
              help="Comma-separated formats, e.g. onnx,onnx-int8. [default: every one in ARTIFACTS]")
@click.option("--batch-sizes", default="1,32,256", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of every format. [default: all cores]")
@click.option("--min-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds of timing per format and batch size (after an uncounted warm-up).")
@click.option("--min-accuracy", type=float, default=None,
              help="Exit 1 if any format's test accuracy is below this fraction (e.g. 0.99).")
@data_dir_option
@json_option
def bench(artifacts, formats, batch_sizes, threads, min_time, min_accuracy, data_dir, as_json) -> None:
    """Latency, throughput, accuracy, size and memory of every format, each in its own process."""
    from .bench import BenchConfig, parse_batch_sizes, parse_formats, run_bench

    report = run_bench(BenchConfig(
        artifacts=artifacts, formats=parse_formats(formats), batch_sizes=parse_batch_sizes(batch_sizes),
        threads=threads, data_dir=data_dir, min_time_s=min_time, min_accuracy=min_accuracy))
    click.echo(json.dumps(report.to_json()) if as_json else report.table())
    report.check_min_accuracy()  # after the report is out: exit 1 with one line


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_path", default=None,
              help="A .onnx, .ts or .pth model. [default: best in artifacts/, else the shipped model]")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Also show the next guesses.")
@json_option
def predict(images: tuple[str, ...], model_path: str | None, top_k: int, as_json: bool) -> None:
    """Predict the digit in each IMAGE (any format and size; - reads one image from stdin)."""
    from .predict import load_model, predict_sources

    rt = load_model(model_path)
    stdin = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: an image, not text
    failed = 0
    for res in predict_sources(rt, images, stdin=stdin):
        if isinstance(res, MnistEdgeError):
            failed += 1
            click.echo(f"Error: {res}", err=True)
        elif as_json:
            click.echo(json.dumps(res.to_json()))
        else:
            top = res.top(top_k, rt.metadata.class_names)
            line = f"{res.path}: {res.label} ({100 * res.confidence:.1f}%)"
            if top_k > 1:
                line += "  next: " + ", ".join(f"{lbl} ({100 * p:.1f}%)" for lbl, p in top[1:])
            click.echo(line)
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--model", "model_path", default=None,
              help="Any model file. [default: the one predict would use]")
@json_option
def info(model_path: str | None, as_json: bool) -> None:
    """A model's format, size, accuracy and the metadata it carries."""
    from .info import describe, render
    from .predict import load_model

    d = describe(load_model(model_path))
    click.echo(json.dumps(d) if as_json else render(d))


@cli.command()
@click.option("--model", "model_path", default=None,
              help="A .onnx, .ts or .pth model. [default: best in artifacts/, else the shipped model]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 exposes the server to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes, each with its own copy of the model.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=5 * 1024 * 1024, show_default=True,
              help="Largest request body accepted; a larger one gets 413 before it is read.")
def serve(model_path: str | None, host: str, port: int, workers: int, max_body_bytes: int) -> None:
    """Serve predictions over HTTP (POST /predict) and a page to draw digits on (GET /)."""
    from .serve import run

    run(host, port, workers, model_path, max_body_bytes)


@cli.command()
def models() -> None:
    """List the architectures with their size and cost per image."""
    from .models import ARCHS, DEFAULT_ARCH, build, count_macs, count_params

    click.echo(f"{'name':<16}{'params':>10}{'MACs/img':>12}  description")
    for name, arch in ARCHS.items():
        m = build(name)
        star = " (default)" if name == DEFAULT_ARCH else ""
        click.echo(f"{name:<16}{count_params(m):>10,}{count_macs(m) / 1e6:>11.2f}M  {arch.summary}{star}")


def main() -> None:
    cli(prog_name="mnist-edge")


if __name__ == "__main__":
    sys.exit(main())
