"""The surrogate loss: values by hand and the paper's three-phase schedule."""

from __future__ import annotations

import math

import pytest
import torch

from neckkit import NeckkitError
from neckkit.config import LossPhase, LossScheduleConfig
from neckkit.training.losses import SurrogateLoss, classification_loss, distillation_loss

STUDENT = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
TEACHER = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
CLASSIFIER = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # [D=2, C=3]
LABELS = torch.tensor([0, 1])


def _ce_by_hand() -> float:
    # logits: [1, 0, 0] and [0, 2, 0]; CE = -log softmax at the label
    first = -math.log(math.e / (math.e + 2))
    second = -math.log(math.e**2 / (math.e**2 + 2))
    return (first + second) / 2


def test_distillation_is_mean_squared_error_to_the_teacher() -> None:
    assert distillation_loss(STUDENT, TEACHER).item() == pytest.approx((1 + 4) / 4)


def test_cross_entropy_uses_raw_logits_without_temperature() -> None:
    assert classification_loss(STUDENT, CLASSIFIER, LABELS).item() == pytest.approx(_ce_by_hand())


@pytest.mark.parametrize(
    ("epoch", "ce_weight", "distillation_weight"),
    [(0, 100, 0), (19, 100, 0), (20, 1, 100), (39, 1, 100), (40, 0, 100), (59, 0, 100)],
)
def test_schedule_weights_follow_paper_eq_4(epoch: int, ce_weight: float, distillation_weight: float) -> None:
    terms = SurrogateLoss()(epoch, STUDENT, TEACHER, CLASSIFIER, LABELS)
    expected = ce_weight * _ce_by_hand() + distillation_weight * 1.25
    assert terms.total.item() == pytest.approx(expected)
    assert terms.distillation.item() == pytest.approx(1.25)
    assert terms.cross_entropy.item() == pytest.approx(_ce_by_hand())


def test_without_labels_every_phase_is_distillation_alone() -> None:
    loss = SurrogateLoss()
    for epoch in (0, 25, 50):
        terms = loss(epoch, STUDENT, TEACHER)
        assert terms.cross_entropy is None
        assert terms.total.item() == pytest.approx(100 * 1.25)


def test_gradient_reaches_the_student_only() -> None:
    teacher = TEACHER.clone().requires_grad_(True)
    SurrogateLoss()(30, STUDENT, teacher, CLASSIFIER, LABELS).total.backward()
    assert STUDENT.grad is not None and teacher.grad is None


def test_custom_phase_lengths() -> None:
    schedule = LossScheduleConfig(
        phases=(LossPhase(until_epoch=1, ce_weight=2, distillation_weight=0), LossPhase(until_epoch=3, ce_weight=0, distillation_weight=5))
    )
    loss = SurrogateLoss(schedule)
    assert loss.weights(0, with_ce=True) == (2, 0) and loss.weights(2, with_ce=True) == (0, 5)
    assert loss.weights(0, with_ce=False) == (0, 5)


def test_labels_without_classifier_are_refused() -> None:
    with pytest.raises(NeckkitError, match="needs both a text classifier and labels"):
        SurrogateLoss()(0, STUDENT, TEACHER, labels=LABELS)
