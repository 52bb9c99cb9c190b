"""Contrastive auxiliary term: InfoNCE between the sequence/user representations of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.auxiliary.augment import augment
from recsys.auxiliary.base import AuxTerm
from recsys.errors import ConfigError, check_number
from recsys.models.base import Encoded, RecModel
from recsys.samplers.base import Negatives

POSITIVES = ("same_target", "dropout", "augment")


def supcon(z: Tensor, positive: Tensor, temperature: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Supervised-contrastive InfoNCE (Khosla et al. 2020, ``L^sup_out``) over the rows of ``z``.

    With ``s_ij = z_i . z_j / temperature`` and ``P(i)`` the positives of row ``i`` (never
    ``i`` itself), every anchor ``i`` with ``|P(i)| > 0`` contributes
    ``l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )`` and the
    value is the mean of ``l_i`` over the anchors; rows without a positive are left out.
    With one positive per row (the other view of a row) this is NT-Xent (SimCLR, Chen et
    al. 2020). No anchor at all gives a zero that still has a (zero) gradient.

    Args:
        z: ``[N, P]`` unit vectors.
        positive: ``[N, N]`` bool, ``positive[i, j]``: ``j`` is a positive of ``i`` (the
            diagonal is ignored).
        temperature: divides the similarities.

    Returns:
        The scalar, and statistics: ``anchor_rows`` and ``excluded_rows`` (rows with and
        without a positive) and ``positive_cosine`` (mean cosine of positive pairs).
    """
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)  # [N, N]
    positive = positive & ~eye  # [N, N]
    count = positive.sum(1)  # [N]
    anchors = count > 0  # [N]
    cos = z @ z.T  # [N, N]
    logits = (cos / temperature).masked_fill(eye, -1e9)  # [N, N] (finite: a lone row gives 0, not NaN)
    log_prob = logits - logits.logsumexp(1, keepdim=True)  # [N, N]
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(1) / count.clamp(min=1)  # [N], 0 without positives
    value = per_anchor.sum() / anchors.sum().clamp(min=1)  # mean over anchors; 0 (with a gradient) if none
    stats = {
        "anchor_rows": anchors.sum().float(),
        "excluded_rows": (~anchors).sum().float(),
        "positive_cosine": (cos.detach() * positive).sum() / count.sum().clamp(min=1),
    }
    return value, stats


class Contrastive(AuxTerm):
    """InfoNCE between the representations of a batch's rows (``aux=[contrastive]``): the
    model's :meth:`~recsys.models.base.RecModel.represent` vectors go through a projection
    head (``Linear(D, D) -> ReLU -> Linear(D, proj_dim)``, SimCLR's, Chen et al. 2020), are
    normalized to ``z``, and :func:`supcon` compares them with ``temperature``. Positives:

    * ``same_target``: the other rows of the batch whose next item is the same (supervised
      positives, DuoRec's, Qiu et al. WSDM 2022); one encoding of the batch, ``B`` anchors,
      rows whose target no other row shares are excluded.
    * ``dropout``: the batch encoded twice in training mode, the two views of a row being
      each other's positive (DuoRec's unsupervised augmentation; SimCSE): ``2B`` anchors.
    * ``augment``: two CL4SRec views of each row's item sequence (crop, mask or reorder,
      one drawn per row and view; Xie et al. ICDE 2022; :mod:`recsys.auxiliary.augment`),
      ``2B`` anchors.

    The module adds ``weight * value``; ``weight`` and ``temperature`` are scheduled
    (``owner: aux.contrastive``) and the last step's ``anchor_rows``, ``excluded_rows`` and
    ``positive_cosine`` are logged as ``train/aux/contrastive/<stat>``.

    Args:
        weight: lambda, the weight in the total objective.
        temperature: divides the cosine similarities; > 0.
        proj_dim: output width of the projection head.
        positives: ``same_target``, ``dropout`` or ``augment``.
        crop_ratio: eta, the fraction of items a crop keeps; in (0, 1].
        mask_ratio: gamma, the fraction of items a mask replaces; in [0, 1].
        reorder_ratio: beta, the fraction of items a reorder shuffles; in [0, 1].
    """

    scheduled = ("weight", "temperature")

    def __init__(self, weight: float = 0.1, temperature: float = 0.07, proj_dim: int = 256,
                 positives: str = "same_target", crop_ratio: float = 0.6, mask_ratio: float = 0.3,
                 reorder_ratio: float = 0.3) -> None:
        super().__init__(weight, "contrastive")
        if positives not in POSITIVES:
            raise ConfigError(f"aux.contrastive.positives must be one of {', '.join(POSITIVES)}, got {positives!r}")
        if isinstance(proj_dim, bool) or not isinstance(proj_dim, int) or proj_dim < 1:
            raise ConfigError(f"aux.contrastive.proj_dim must be an integer >= 1, got {proj_dim!r}")
        self.ratios = (check_number("aux.contrastive.crop_ratio", crop_ratio, 0, 1, low_open=True),
                       check_number("aux.contrastive.mask_ratio", mask_ratio, 0, 1),
                       check_number("aux.contrastive.reorder_ratio", reorder_ratio, 0, 1))
        self.temperature = temperature
        self.proj_dim, self.positives = proj_dim, positives
        self.head: nn.Module | None = None  # built by check(model), before the optimizer exists

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_number("aux.contrastive.temperature", value, 0, low_open=True)

    def check(self, model: RecModel) -> None:
        """Fails before training for a model without :meth:`represent` (MF, LightGCN), with
        ``positives=dropout`` for a model without dropout (identical views) and with
        ``positives=augment`` for one without an item sequence; builds the projection head
        for the model's width ``model.dim`` (so it is in the optimizer and checkpoints)."""
        if not model.represents():
            model.represent({})  # the model's own one-line error
        dim = getattr(model, "dim", None)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(
                f"model {type(model).__name__} does not give the width of its representation (an integer `dim`), "
                f"which aux.contrastive needs for its projection head"
            )
        if self.positives == "dropout" and not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
            raise ConfigError(
                f"aux.contrastive.positives=dropout compares two dropout draws, but model {type(model).__name__} has no "
                f"dropout (rate 0), so both views are the same; set model.dropout=0.1 or use aux.contrastive.positives=augment"
            )
        if self.positives == "augment" and model.sequence_key is None:
            raise ConfigError(
                f"aux.contrastive.positives=augment rewrites the model's item sequence, but model {type(model).__name__} "
                f"reads none (sequence_key); use aux.contrastive.positives=dropout or same_target"
            )
        if self.head is None or self.head[0].in_features != dim:
            self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, self.proj_dim))

    def project(self, vector: Tensor) -> Tensor:
        """``[N, D]`` representations -> ``[N, proj_dim]`` unit vectors (float32)."""
        if self.head is None:
            raise RuntimeError("Contrastive.check(model) builds the projection head; call it before training")
        return F.normalize(self.head(vector).float(), dim=-1)

    def views(self, model: RecModel, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Two representations of every row: two dropout draws, or two augmented sequences."""
        if self.positives == "dropout":
            return model.represent(batch).vector, model.represent(batch).vector  # [B, D] twice
        key, pad = model.sequence_key, model.pad_id
        crop_ratio, mask_ratio, reorder_ratio = self.ratios
        seq = batch[key]  # [B, L]
        return tuple(  # type: ignore[return-value]
            model.represent({**batch, key: augment(seq, pad, crop_ratio, mask_ratio, reorder_ratio, model.mask_id)}).vector
            for _ in range(2)
        )

    def forward(self, model: RecModel, enc: Encoded | None = None, negatives: Negatives | None = None,
                batch: dict[str, Tensor] | None = None) -> Tensor:
        """The term on the training ``batch`` (``enc`` and ``negatives`` are not used)."""
        if self.positives == "same_target":
            rep = model.represent(batch)
            z = self.project(rep.vector)  # [B, P]
            positive = rep.target.unsqueeze(1) == rep.target.unsqueeze(0)  # [B, B]
        else:
            first, second = self.views(model, batch)  # [B, D] each
            z = self.project(torch.cat([first, second]))  # [2B, P]
            rows = torch.arange(z.shape[0], device=z.device)  # [2B]
            partner = (rows + first.shape[0]) % z.shape[0]  # [2B] the other view of the same row
            positive = partner.unsqueeze(1) == rows.unsqueeze(0)  # [2B, 2B]
        with torch.autocast(z.device.type, enabled=False):  # similarities in float32 under bf16 training
            value, self.last_stats = supcon(z, positive, self.temperature)
        return value
