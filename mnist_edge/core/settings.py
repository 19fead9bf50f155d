"""Typed settings of every job, in one torch-free place: the CLI shows these defaults, the jobs take these objects.

Training settings come in two parts (as nanoGPT keeps `model_args` apart from the run's config): the
recipe, which decides the weights (same recipe and seed, same weights on CPU; `--resume` refuses a
different one), and the place, which says where and how the run happens and changes nothing in it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mnist_edge.core.formats import tunable
from mnist_edge.core.tolerances import Tolerances

DEFAULT_ARTIFACTS = "artifacts"
DEFAULT_ARCH = "edgenet"


@dataclass(frozen=True)
class TrainRecipe:
    """What defines a training run. Defaults: 99.707% on MNIST (mean of 3 seeds) in under 5 min on 2 CPU cores."""

    epochs: int = 20
    lr: float = 0.02  # peak learning rate of the one-cycle schedule (at batch_size; see min_steps)
    batch_size: int = 256
    # A run on little data or for few epochs takes at least this many optimizer steps: the batch halves
    # (down to min_batch) until it does, and the peak lr follows it by sqrt(batch / batch_size), as
    # Adam's noise scale does. 6,000 images x 1 epoch: 24 steps of 256 reach 88%, 188 steps of 32 96.6%.
    min_steps: int = 200
    min_batch: int = 32  # smaller batches make BatchNorm's batch statistics noisy and steps slow
    # BatchNorm's running statistics recomputed after each epoch over a fixed sample of training images
    # with the weights as they are: the momentum-averaged ones lag far behind weights that move fast
    # (detectron2's PreciseBN). 6,000 images x 1 epoch: 43% without, 88% with (same steps).
    bn_recalibration: bool = True
    # ... in runs of at most this many steps. Longer runs end with weights that move slowly, whose momentum
    # statistics already fit them: recomputing them there changes the accuracy by hundredths of a point.
    bn_recalibration_max_steps: int = 2000
    # An exponential moving average of the weights (and BatchNorm buffers) over about this many last steps
    # is the model evaluated, saved and exported: decay 1 - 1/ema_steps (less while it warms up over the
    # first steps, so early epochs show the weights being trained); 0: the trained weights. The average is
    # at least as accurate as the last weights over decays from 0.99 to 0.9995, and its averaged BatchNorm
    # statistics beat recomputed ones. Cost: about 0.06 ms a step.
    ema_steps: int = 500
    # ... in runs of at least this many steps: shorter ones (every small-data row) are the recalibrated
    # runs above, whose weights move fast to the end; they keep the trained weights, unchanged.
    ema_min_steps: int = 2000
    optimizer: str = "adam"  # "adam" (AdamW) or "sgd" (momentum 0.9, nesterov)
    # Knowledge distillation (Hinton et al. 2015): a trained checkpoint (model.pth) whose softened
    # predictions on the same augmented batch the model learns as well, with this weight; the labels'
    # cross-entropy keeps 1 - distill_weight. The teacher runs in eval mode, in float32, on every CPU.
    teacher: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1  # softer targets: better calibrated, slightly more accurate
    arch: str = DEFAULT_ARCH
    seed: int = 0
    # bf16 autocast for the forward pass where the processor has native bf16 (AVX512-BF16/AMX, or a
    # CUDA GPU): ~1.6x faster training here; weights, optimizer and evaluation stay float32.
    precision: str = "auto"  # auto|bf16|fp32
    augment: bool = True  # the dataset's augmentation per image (core.metadata; MNIST: rotation, scale, shift)
    dataset: str = "mnist"
    subset: int | None = None  # train on the first N training images only (quick runs, small data)


@dataclass(frozen=True)
class TrainPlace:
    """Where and how a run happens: none of it changes the weights (on one device, at one thread count)."""

    device: str = "auto"  # auto|cpu|cuda
    data_dir: str | None = None
    out: str = DEFAULT_ARTIFACTS
    resume: bool = False
    # torch intra-op threads; None = all cores. The count changes the weights' last bits (oneDNN splits its
    # sums by thread): MNIST 6,000 x 1 with a 50-step average scored 96.25% at 1 thread, 96.37% at 2.
    threads: int | None = None
    plots: bool = True


@dataclass(frozen=True)
class TrainSettings:
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    place: TrainPlace = field(default_factory=TrainPlace)

    @classmethod
    def of(cls, **options) -> TrainSettings:
        """Flat keyword options (the CLI's, a test's) sorted into recipe and place; unknown names are an error.

        A recipe setting not given takes the architecture's default (core.archs: ArchSpec.recipe), else
        TrainRecipe's."""
        from mnist_edge.core.archs import ARCH_SPECS  # archs reads DEFAULT_ARCH from here

        spec = ARCH_SPECS.get(options.get("arch", DEFAULT_ARCH))
        options = {**(spec.recipe if spec else {}), **options}
        names = {f.name for f in fields(TrainRecipe)}
        where = {f.name for f in fields(TrainPlace)}
        unknown = set(options) - names - where
        if unknown:
            raise TypeError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(TrainRecipe(**{k: v for k, v in options.items() if k in names}),
                   TrainPlace(**{k: v for k, v in options.items() if k in where}))


CALIBRATIONS = ("minmax", "entropy", "percentile")  # ONNX Runtime's CalibrationMethod, by name
QUANT_FORMS = ("qdq", "qoperator")  # Q/DQ pairs around float ops, or fused QLinearConv/QGemm ops
GRAPH_OPTIMIZATIONS = ("disabled", "basic", "extended", "all")  # ONNX Runtime's GraphOptimizationLevel


@dataclass(frozen=True)
class Int8Recipe:
    """How an ONNX model is made int8 and run: what `tune` searches, and what the int8 model's metadata records."""

    name: str = "default"
    per_channel: bool = True  # int8 weights with one scale per output channel (else one per tensor)
    calibration: str = "minmax"  # one of CALIBRATIONS: how activation ranges come from the calibration images
    calibration_images: int = 500  # training images (the same seeded pick as `export`)
    form: str = "qdq"  # one of QUANT_FORMS
    activations: str = "uint8"  # uint8 (U8S8: x86's VNNI fast path) or int8 (S8S8)
    symmetric_activations: bool = False  # zero point 0 (int8) / 128 (uint8) for every activation
    # 7-bit weights (|w| <= 64): x86 CPUs without VNNI (AVX2) add pairs of u8 x s8 products in int16
    # (vpmaddubsw), which saturates with 8-bit weights; with 7 bits no pair can, so ONNX Runtime computes
    # the exact integer result on every CPU (the file is right everywhere, not only where VNNI is).
    reduce_range: bool = True
    exclude: tuple[str, ...] = ()  # node names of the pre-processed fp32 graph left in fp32
    # Session options, applied by the ONNX loader from the metadata when its caller names none:
    graph_optimization: str = "all"  # one of GRAPH_OPTIMIZATIONS
    threads: int | None = None  # intra-op threads; None: every core

    def to_dict(self) -> dict:
        return {**asdict(self), "exclude": list(self.exclude)}

    @classmethod
    def from_dict(cls, d: dict) -> Int8Recipe:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        return cls(**{**d, "exclude": tuple(d.get("exclude", ()))})

    def describe(self) -> str:
        """One line, as `info` shows it."""
        parts = [f"onnxruntime static {'QDQ' if self.form == 'qdq' else 'QOperator'} int8",
                 f"{'per-channel' if self.per_channel else 'per-tensor'} weights",
                 f"{'symmetric ' if self.symmetric_activations else ''}{self.activations} activations",
                 f"{self.calibration_images} calibration images ({self.calibration})"]
        if self.reduce_range:
            parts.insert(2, "7-bit weight range")
        if self.exclude:
            parts.append(f"fp32 {', '.join(self.exclude)}")
        if self.graph_optimization != "all":
            parts.append(f"graph optimization {self.graph_optimization}")
        if self.threads:
            parts.append(f"{self.threads} thread(s)")
        return ", ".join(parts)


DEFAULT_INT8_RECIPE = Int8Recipe()  # what `export --quantize` applies


@dataclass(frozen=True)
class ExportSettings:
    """`mnist-edge export`: which formats, from which checkpoint, into which folder, held to which bars."""

    checkpoint: Path = Path(DEFAULT_ARTIFACTS) / "model.pth"
    out: Path = Path(DEFAULT_ARTIFACTS)
    format: str = "all"  # a family of core.formats, or "all"
    quantize: bool = False  # also the int8 rows
    quantize_mode: str = "static"  # ONNX int8: static QDQ (fastest here, see README) or dynamic
    calibration_samples: int = DEFAULT_INT8_RECIPE.calibration_images  # training images that calibrate static int8
    data_dir: str | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    int8_recipe: Int8Recipe | None = None  # ONNX static int8; None: the default recipe with calibration_samples


QUANTIZE_MODES = ("static", "dynamic")


@dataclass(frozen=True)
class BenchSettings:
    """What `mnist-edge bench` measures and how long it spends on each point."""

    artifacts: str | Path = DEFAULT_ARTIFACTS  # model.pth and the exported models; the reports go here
    formats: tuple[str, ...] | None = None  # None: every registered format whose file is in artifacts
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    threads: int | None = None  # per format, the same for all; None: every core this process may use
    data_dir: str | None = None  # the test set (None: $MNIST_EDGE_DATA, then data/)
    min_accuracy: float | None = None  # fraction 0..1; exit 1 when a format is below it
    min_time_s: float = 1.0  # timing per (format, batch size), over all rounds: at least this long ...
    min_iters: int = 50  # ... and at least this many calls (p99 of 50 calls is still a tail),
    # ... unless that takes longer than this: a slow format at a large batch (eager PyTorch, the C model at
    # 256: ~150 ms a call) gets 2-3 calls a window, which still gives 8 windows for its interval.
    max_time_s: float = 2.5
    rounds: int = 8  # windows per point, interleaved across all points: the p50's interval comes from them
    warmup_s: float = 0.2  # one uncounted window per point first: allocations, ORT's first-run planning
    warmup_iters: int = 5
    write: bool = True  # bench.json, bench.md and bench.png in artifacts
    plot: bool = True  # bench.png (needs matplotlib)
    worker_timeout_s: float = 600.0  # a worker that hangs longer is stopped and reported
    device_images: int = 20  # test images the emulated devices' instruction counts are averaged over
    clock_mhz: float | None = None  # a device clock for an estimated time from instructions (None: no estimate)


TUNE_FORMATS = tuple(f.name for f in tunable())  # the int8 formats `tune` searches recipes for: the registry's


@dataclass(frozen=True)
class TuneSettings:
    """`mnist-edge tune`: the fastest int8 recipe that loses at most max_drop points, and why layers hurt."""

    artifacts: Path = Path(DEFAULT_ARTIFACTS)  # model.pth and model.onnx in; model.int8.onnx and tune.* out
    max_drop: float = 0.1  # accuracy points (not a fraction) an int8 model may lose against the checkpoint
    batch: int = 1  # the batch size whose p50 latency decides
    threads: int | None = None  # None: search 1 thread and every core; N: only N
    formats: tuple[str, ...] = TUNE_FORMATS
    budget_minutes: float = 10.0  # new candidates stop being made when most of it is spent
    recipes: tuple[str, ...] | None = None  # names from the search's plan to try (None: all, in order)
    data_dir: str | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)  # the other int8 bars (agreement) still hold
    # Timing of each stage, in interleaved rounds as `bench` does (short windows: many candidates).
    rounds: int = 10
    min_time_s: float = 1.5  # per candidate and stage, over all rounds
    confirm_time_s: float = 3.0  # per point of the final run (chosen, default recipe, fp32; batch and 256)
    throughput_batch: int = 256  # the final run's second batch size
    layer_images: int = 200  # calibration images the per-layer SQNR is measured on
    write: bool = True
    plot: bool = True


@dataclass(frozen=True)
class ServeSettings:
    """`mnist-edge serve`."""

    model: str | None = None  # None: the model predict would use
    host: str = "127.0.0.1"  # loopback: exposing the server is a deliberate --host 0.0.0.0
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 5 * 1024 * 1024  # a phone photo fits; a drawn 280x280 PNG is ~5 KB
