"""Sampled softmax with logQ correction (Yi et al., RecSys 2019)."""

from torch import Tensor

from recsys.errors import ConfigError
from recsys.losses.base import RecLoss, Scores, masked_softmax_ce, negative_mask


class SSM(RecLoss):
    """Softmax cross-entropy over the positive and sampled negatives with corrected logits
    ``s_j - lambda * ln q_j``, where ``q_j`` is the probability that the sampler draws
    ``j``. The correction removes the sampler's popularity bias: a popular negative (large
    ``q_j``) has its logit lowered. ``logq_lambda = 0`` turns it off. The positive is
    corrected the same way when its ``log_q`` is known (as TensorFlow's sampled softmax
    does).

    Args:
        logq_lambda: weight of the correction (scheduled by ``logq_warmup``).

    Shape:
        pos ``[B]``, neg ``[B, N]``, pos_log_q ``[B]``, neg_log_q ``[B, N]`` -> scalar.
    """

    scheduled = ("logq_lambda",)

    def __init__(self, logq_lambda: float = 1.0) -> None:
        super().__init__()
        self.logq_lambda = logq_lambda

    def forward(self, s: Scores) -> Tensor:
        pos, neg = s.pos.float(), s.neg.float()
        if self.logq_lambda != 0.0:
            if s.neg_log_q is None:
                raise ConfigError(
                    "loss=ssm with logq_lambda != 0 needs a sampler that exposes log-probabilities "
                    "(uniform, popularity, in_batch or mixed); set loss.logq_lambda=0 or change sampler="
                )
            neg = neg - self.logq_lambda * s.neg_log_q.float()
            if s.pos_log_q is not None:
                pos = pos - self.logq_lambda * s.pos_log_q.float()
        return masked_softmax_ce(pos, neg, negative_mask(s))
