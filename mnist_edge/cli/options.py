"""Options several commands share, with their defaults taken from core.settings (never copied into help)."""

from __future__ import annotations

from collections.abc import Callable

import click

from mnist_edge.core.metadata import DATASETS
from mnist_edge.core.settings import DEFAULT_ARTIFACTS
from mnist_edge.core.tolerances import Tolerances

data_dir = click.option(
    "--data-dir", envvar="MNIST_EDGE_DATA", default=None, show_envvar=True,
    help="Folder with the dataset (IDX files, raw or .gz, or mnist_train/test.csv). "
         "Default: data/ (downloaded there if empty).")
dataset = click.option(
    "--dataset", type=click.Choice(list(DATASETS)), default="mnist", show_default=True,
    help="Which 28x28 10-class dataset (class names travel with the model).")
as_json = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
artifacts = click.option("--artifacts", type=click.Path(file_okay=False), default=DEFAULT_ARTIFACTS,
                         show_default=True, help="Folder with model.pth and the exported models.")


def tolerances(f):
    """--atol, --min-agreement-int8, --max-acc-drop-int8, --min-agreement-reference, defaulting to core.tolerances."""
    t = Tolerances()
    f = click.option("--min-agreement-reference", type=float, default=None,
                     help="Smallest top-1 agreement of a re-implementation (TFLM, C) with the format it "
                          "re-implements. [default: the format's own]")(f)
    f = click.option("--max-acc-drop-int8", type=float, default=t.int8_max_accuracy_drop, show_default=True,
                     help="Largest accuracy drop of an int8 format, as a fraction.")(f)
    f = click.option("--min-agreement-int8", type=float, default=t.int8_min_agreement, show_default=True,
                     help="Smallest top-1 agreement of an int8 format with PyTorch.")(f)
    f = click.option("--atol", type=float, default=t.fp32_max_abs_diff, show_default=True,
                     help="Largest |logit difference| of an fp32 format.")(f)
    return f


def tolerances_of(atol: float, min_agreement_int8: float, max_acc_drop_int8: float,
                  min_agreement_reference: float | None) -> Tolerances:
    return Tolerances(fp32_max_abs_diff=atol, int8_min_agreement=min_agreement_int8,
                      int8_max_accuracy_drop=max_acc_drop_int8, reference_min_agreement=min_agreement_reference)


class RegistryChoice(click.Choice):
    """A Choice read from the format registry when the option is parsed, so a format registered later counts."""

    def __init__(self, values: Callable[[], list[str]]):
        self._values = values
        super().__init__([])

    @property
    def choices(self) -> list[str]:
        return self._values()

    @choices.setter
    def choices(self, _ignored) -> None:
        pass
