"""Parity tolerances: what an exported model must meet against PyTorch (check and export use them).

A module of plain constants, so the CLI can show them in --help without importing numpy.
"""

from dataclasses import dataclass

FP32_MAX_ABS_DIFF = 1e-4  # max |logit difference| allowed for fp32 formats
FP32_MIN_AGREEMENT = 1.0  # fraction of images with the same top-1 class as PyTorch
INT8_MIN_AGREEMENT = 0.995
INT8_MAX_ACCURACY_DROP = 0.002  # 0.2 points of accuracy, as a fraction


@dataclass
class Tolerances:
    fp32_max_abs_diff: float = FP32_MAX_ABS_DIFF
    fp32_min_agreement: float = FP32_MIN_AGREEMENT
    int8_min_agreement: float = INT8_MIN_AGREEMENT
    int8_max_accuracy_drop: float = INT8_MAX_ACCURACY_DROP
    # Overrides a row's reference_min_agreement (top-1 agreement with its reference sibling) when set:
    # a toy model's near-ties flip between two int8 runtimes more often than a trained model's.
    reference_min_agreement: float | None = None
