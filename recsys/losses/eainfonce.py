"""Entropy-adaptive InfoNCE: a temperature that follows the model's state."""

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.errors import ConfigError, check_number
from recsys.losses.base import RecLoss, Scores, masked_logits, softmax_ce_first


class EntropyAdaptiveInfoNCE(RecLoss):
    """InfoNCE whose temperature is set every training step from two signals:

    * ``u`` - uncertainty: the mean normalized entropy of the softmax over each row's
      candidates at the current temperature, ``H / ln(#candidates)`` in [0, 1];
    * ``r`` - redundancy: the mean absolute cosine between distinct query vectors of the
      batch, in [0, 1] (``0`` when the scores carry no queries).

    Rule (all under ``no_grad``): ``target = tau_min + (tau_max - tau_min) * clip(w * u +
    (1 - w) * r, 0, 1)``, then ``tau <- (1 - momentum) * tau + momentum * target`` and
    ``tau`` is clipped to ``[tau_min, tau_max]``. The temperature rises while the model is
    uncertain or its user vectors are redundant, and falls as they sharpen. The loss of the
    step uses the updated ``tau``; it is logged as ``sched/temperature``.

    ``tau`` changes during training, so it lives in a persistent float64 buffer (``tau``,
    in the module's ``state_dict`` and so in checkpoints: a resumed run continues from
    it); :attr:`temperature` reads and sets it as a float.

    Args:
        tau_min, tau_max: bounds of the temperature.
        temperature: starting value.
        entropy_weight: ``w``, share of the uncertainty signal.
        momentum: smoothing of the updates.
    """

    scheduled = ("temperature",)

    def __init__(
        self,
        tau_min: float = 0.05,
        tau_max: float = 0.5,
        temperature: float = 0.2,
        entropy_weight: float = 0.5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 < tau_min <= temperature <= tau_max:
            raise ConfigError(
                f"loss needs 0 < tau_min <= temperature <= tau_max, got {tau_min}, {temperature}, {tau_max}"
            )
        self.tau_min, self.tau_max = tau_min, tau_max
        self.entropy_weight = check_number("loss.entropy_weight", entropy_weight, 0, 1)
        self.momentum = check_number("loss.momentum", momentum, 0, 1, low_open=True)
        self.register_buffer("tau", torch.tensor(float(temperature), dtype=torch.float64))

    @property
    def temperature(self) -> float:
        """The current temperature (the ``tau`` buffer, as a float)."""
        return float(self.tau)

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.tau.fill_(float(value))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # a checkpoint written before tau was a buffer keeps the starting temperature (as
        # BatchNorm does for num_batches_tracked), so old checkpoints still load strictly
        state_dict.setdefault(prefix + "tau", self.tau.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def signals(self, logits: Tensor, query: Tensor | None) -> tuple[float, float]:
        """(uncertainty, redundancy) of a batch; ``logits`` ``[B, 1 + N]`` with -inf masks."""
        probs = torch.softmax(logits.float() / self.temperature, dim=1)
        entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum(1)  # [B]
        candidates = torch.isfinite(logits).sum(1).clamp(min=2).float()
        uncertainty = float((entropy / candidates.log()).mean())
        redundancy = 0.0
        if query is not None and query.shape[0] > 1:
            unit = F.normalize(query.float(), dim=1)
            cos = (unit @ unit.T).abs()  # [B, B]
            b = cos.shape[0]
            redundancy = float((cos.sum() - cos.diagonal().sum()) / (b * (b - 1)))
        return uncertainty, redundancy

    def forward(self, s: Scores) -> Tensor:
        logits = masked_logits(s)
        if self.training:
            u, r = self.signals(logits, s.query)
            mix = min(1.0, max(0.0, self.entropy_weight * u + (1 - self.entropy_weight) * r))
            target = self.tau_min + (self.tau_max - self.tau_min) * mix
            tau = (1 - self.momentum) * self.temperature + self.momentum * target
            self.temperature = min(self.tau_max, max(self.tau_min, tau))
        return softmax_ce_first(logits / self.temperature)
