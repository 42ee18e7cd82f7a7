"""The paper's surrogate loss: distillation and zero-shot cross-entropy, on a three-phase schedule.

Only the visual encoder is involved, never the LLM. ``student`` is the encoder's final image
embedding on the neck path, ``teacher`` the same embedding of the uncompressed image from the frozen
full encoder. Cross-entropy uses the raw dot product of the (unnormalised) student embedding with
the text classifier [embed_dim, num_classes]: no normalisation, no temperature (paper).
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from neckkit.config.paper import LossScheduleConfig
from neckkit.errors import NeckkitError


class LossTerms(NamedTuple):
    """The weighted total and its unweighted parts (for logging)."""

    total: Tensor
    distillation: Tensor
    cross_entropy: Tensor | None


def distillation_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """MSE between the neck-path embedding and the uncompressed image's: [B, D], [B, D] -> []."""
    return F.mse_loss(student, teacher.detach())


def classification_loss(student: Tensor, classifier: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of raw logits ``student @ classifier``: [B, D], [D, C], [B] -> []."""
    return F.cross_entropy(student @ classifier.to(student.dtype), labels)


class SurrogateLoss:
    """Paper Eq. 4: epochs [0, E1): 100 CE; [E1, E2): CE + 100 distillation; [E2, end): 100 distillation.

    Without labels or a text classifier (plain image folders, encoders without a text tower) there is
    no CE term; every phase then uses distillation alone, weighted as the schedule's last phase.
    """

    def __init__(self, schedule: LossScheduleConfig | None = None) -> None:
        self.schedule = schedule or LossScheduleConfig()

    def weights(self, epoch: int, with_ce: bool) -> tuple[float, float]:
        """(ce_weight, distillation_weight) for ``epoch``."""
        if not with_ce:
            return 0.0, self.schedule.phases[-1].distillation_weight or 1.0
        phase = self.schedule.phase_at(epoch)
        return phase.ce_weight, phase.distillation_weight

    def __call__(
        self,
        epoch: int,
        student: Tensor,
        teacher: Tensor,
        classifier: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> LossTerms:
        if (classifier is None) != (labels is None):
            raise NeckkitError("the cross-entropy term needs both a text classifier and labels")
        with_ce = classifier is not None
        ce_weight, distillation_weight = self.weights(epoch, with_ce)
        distillation = distillation_loss(student, teacher)
        cross_entropy = classification_loss(student, classifier, labels) if with_ce else None
        total = distillation_weight * distillation
        if cross_entropy is not None:
            total = total + ce_weight * cross_entropy
        return LossTerms(total=total, distillation=distillation, cross_entropy=cross_entropy)
