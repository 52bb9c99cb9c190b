"""The LightningModule: an injected model, loss and negative sampler, plus evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from recsys.distributed import all_gather_objects, world_size
from recsys.errors import TrainingError
from recsys.losses.base import RecLoss, Scores
from recsys.losses.catalogue import CatalogueScores, check_catalogue_sampler
from recsys.metrics.collapse import QuerySample, diagnostics
from recsys.metrics.evaluator import RankingEvaluator
from recsys.models.base import Encoded, RecModel
from recsys.rng import global_states, set_global_states
from recsys.samplers.base import Negatives, NegativeSampler
from recsys.scoring import score_rows


@dataclass
class Objective:
    """The value of one training step.

    Attributes:
        total: the scalar that is minimized, ``main + sum(weight * aux term)``.
        terms: the unweighted value of each term by name (the main loss under its
            ``loss_name``, then each auxiliary term), for logging.
        rows: number of training rows of the step (the batch size for logging).
    """

    total: Tensor
    terms: dict[str, Tensor]
    rows: int


class RecModule(pl.LightningModule):
    """Trains ``model`` with ``loss`` on negatives from ``sampler``; evaluates by ranking.

    Args:
        model: the recommender (embeddings and scores only).
        loss: the training objective (``recsys.losses``).
        sampler: where negatives come from (``recsys.samplers``).
        optimizer: a partial optimizer, completed with the parameters.
        aux: auxiliary loss terms by name (:class:`~recsys.auxiliary.base.AuxTerm`: each
            has a ``weight`` and is called with the model, the step's ``enc=`` rows,
            ``negatives=`` and the training ``batch=``); the objective is
            ``loss + sum(weight * term)``. Each term's scheduled attributes are logged as
            ``sched/aux.<name>.<attribute>`` and its ``last_stats`` as
            ``train/aux/<name>/<stat>``.
        loss_name: name of the main loss in the logs (``train/loss/<loss_name>``).
        pretrained_parts: model parts filled from checkpoints by ``init_from`` (``""`` =
            the whole model), for callbacks that care (the freeze curriculum).
        scheduler: an optional partial learning-rate scheduler, completed with the optimizer.
        ks: metric cut-offs.
        n_items: catalogue size.
        monitor: the validation metric the checkpoint and early stopping follow.
        short_head_share: share of training interactions held by the short head, for
            ``aplt@K``; the evaluator reports ``arp@K``, ``aplt@K`` and ``novelty@K`` once
            ``evaluator.setup(split)`` has given it the training popularity (``build`` does).
        eval_item_chunk: None: each evaluation batch scores all items at once (``[B, I]``);
            an integer: ``eval_item_chunk`` items at a time (``eval.item_chunk``, bounded
            memory; :mod:`recsys.metrics.chunked`), with the same metrics.
    """

    def __init__(
        self,
        model: RecModel,
        loss: RecLoss,
        sampler: NegativeSampler,
        optimizer: Callable,
        n_items: int,
        scheduler: Callable | None = None,
        ks: list[int] = (10, 20),
        monitor: str = "val/ndcg@10",
        aux: dict[str, torch.nn.Module] | None = None,
        loss_name: str | None = None,
        pretrained_parts: list[str] = (),
        short_head_share: float = 0.2,
        eval_item_chunk: int | None = None,
    ) -> None:
        super().__init__()
        self.model, self.loss, self.sampler, self.n_items = model, loss, sampler, n_items
        self.aux = torch.nn.ModuleDict(aux or {})
        self.loss_name = loss_name or type(loss).__name__.lower()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor = monitor
        self.pretrained_parts = list(pretrained_parts)
        check_catalogue_sampler(loss, sampler)  # loss.item_chunk needs sampler=full
        self.evaluator = RankingEvaluator(list(ks), n_items, short_head_share, item_chunk=eval_item_chunk)
        self.test_per_user: dict[str, Tensor] = {}
        self.query_sample = QuerySample()  # user vectors of the collapse diagnostics
        self._resumed_rng: dict | None = None  # global generators' states to restore (on_fit_start)

    def setup(self, stage: str) -> None:
        """Lightning's hook, in every process: the sampler draws from this process's stream."""
        self.sampler.set_rank(self.global_rank)

    # ---- training -------------------------------------------------------------------
    def scores(self, enc: Encoded, negatives: Negatives) -> Scores | CatalogueScores:
        """Score every row's positive and negatives for the loss (:func:`recsys.scoring.score_rows`)."""
        return score_rows(self.model, self.loss, enc, negatives, self.n_items)

    def objective(self, batch: dict[str, Tensor]) -> Objective:
        """The training objective of one batch: encode, draw negatives, score, main loss
        plus weighted auxiliary terms. Raises :class:`TrainingError` when it is not finite.

        This is the one training step: ``training_step``, the benchmark and the loss
        contract tests all call it.
        """
        enc = self.model.encode(batch)
        negatives = self.sampler.sample(enc.target, enc.user)
        main = self.loss(self.scores(enc, negatives))
        terms = {self.loss_name: main}
        total = main
        for name, term in self.aux.items():
            terms[name] = term(self.model, enc=enc, negatives=negatives, batch=batch)
            total = total + term.weight * terms[name]
        if not torch.isfinite(total):
            raise TrainingError(
                f"training loss became {total.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                f"lower optimizer.lr or check the loss settings"
            )
        return Objective(total=total, terms=terms, rows=enc.target.numel())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Log the step's loss terms and aux statistics (under DDP their means over every
        process's rows: ``sync_dist``, a no-op in a single process) and the schedules."""
        step = self.objective(batch)
        self.log("train/loss", step.total, on_step=True, on_epoch=True, prog_bar=True, batch_size=step.rows, sync_dist=True)
        if self.aux:
            for name, value in step.terms.items():
                self.log(f"train/loss/{name}", value, on_step=True, on_epoch=True, batch_size=step.rows, sync_dist=True)
        scheduled = {**self.model.schedule_values(), **self.loss.schedule_values()}
        for name, term in self.aux.items():
            for stat, value in term.last_stats.items():
                self.log(f"train/aux/{name}/{stat}", value, on_step=True, on_epoch=True, batch_size=step.rows, sync_dist=True)
            scheduled.update({f"aux.{name}.{k}": v for k, v in term.schedule_values().items()})
        for name, value in scheduled.items():
            self.log(f"sched/{name}", value, on_step=True, on_epoch=False, batch_size=step.rows)
        return step.total

    def configure_optimizers(self):
        # only trainable parameters: a freezing callback adds the frozen ones as new param groups later
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer=optimizer)}

    # ---- checkpoints ----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add the random state that the parameters, buffers, optimizer and callbacks do
        not hold: the sampler's generators and the global generators (dropout). Under DDP
        (Lightning builds the checkpoint in every process, rank 0 writes it) also every
        process's sampler states, ``sampler_by_rank``."""
        checkpoint["sampler"] = self.sampler.state_dict()
        if world_size() > 1:
            checkpoint["sampler_by_rank"] = all_gather_objects(checkpoint["sampler"])
        checkpoint["rng"] = global_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the sampler; keep the global generators' states for :meth:`on_fit_start`
        when resuming a fit (evaluating a checkpoint leaves them alone). Each process takes
        its own sampler states; a process the checkpoint has none for (a resume with more
        processes than saved it) keeps its fresh stream."""
        by_rank = checkpoint.get("sampler_by_rank") or ([checkpoint["sampler"]] if "sampler" in checkpoint else [])
        if self.global_rank < len(by_rank):
            self.sampler.load_state_dict(by_rank[self.global_rank])
        if "rng" in checkpoint and (self._trainer is None or self.trainer.state.fn == TrainerFn.FITTING):
            self._resumed_rng = checkpoint["rng"]

    def on_fit_start(self) -> None:
        """A resumed fit restores the global generators here: after the callbacks' set-up,
        and before the first epoch's data iterator is created (it draws a seed from torch's
        generator before ``on_train_start``, as each later epoch's does after the previous
        epoch's checkpoint), so the resumed epochs draw what the uninterrupted run's did.
        Lightning runs a sanity validation with the generators isolated."""
        if self._resumed_rng is not None:
            set_global_states(self._resumed_rng)
            self._resumed_rng = None

    # ---- evaluation -----------------------------------------------------------------
    def _eval_step(self, batch: dict[str, Tensor], prefix: str) -> None:
        """Score the batch's users against every item in float32, whatever the training
        precision (bf16 scores tie many items with the target, and ties are pessimistic)."""
        with torch.autocast(self.device.type, enabled=False):
            query = self.model.user_queries(batch).float()  # [B, D]
            items = self.model.item_embeddings().float()  # [I, D]
            # [B, I] float32 scores at once, or eval.item_chunk items at a time
            self.evaluator.update_blocks(lambda cols: self.model.score(query, items[cols]), batch, prefix)
        self.query_sample.add(query, batch["user"])

    def _reset_evaluation(self) -> None:
        self.evaluator.reset()
        self.query_sample.reset()

    def on_validation_epoch_start(self) -> None:
        self._reset_evaluation()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def _check_finite(self, stage: str) -> None:
        """Stop the run, naming the stage and epoch, if some user's scores were not finite."""
        if self._trainer is not None and self.trainer.sanity_checking:
            stage = f"{stage} (sanity check)"
        self.evaluator.check_finite(stage, self.current_epoch)

    def _log_evaluation(self, metrics: dict[str, float]) -> None:
        """Log the stage's metrics. After :meth:`RankingEvaluator.gather` every process holds
        the same values; ``sync_dist`` with ``max`` keeps them exactly (a mean of equal
        float32 values need not be), so checkpoint selection and early stopping decide the
        same in every process, and it is a no-op in a single process."""
        monitored = metrics.pop(self.monitor, None)
        self.log_dict(metrics, sync_dist=True, reduce_fx="max")
        if monitored is not None:
            self.log(self.monitor, monitored, prog_bar=True, sync_dist=True, reduce_fx="max")

    def on_validation_epoch_end(self) -> None:
        self.evaluator.gather()  # under DDP: every process's users, each once
        self._check_finite("val")
        metrics = self.evaluator.compute("val")
        metrics.update(diagnostics(self.model.item_embeddings().detach(), "collapse/item"))
        users = self.query_sample.vectors(self.device)
        if users is not None:
            metrics.update(diagnostics(users, "collapse/user"))
        self._log_evaluation(metrics)

    def on_test_epoch_start(self) -> None:
        self._reset_evaluation()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.evaluator.gather()  # under DDP: every process's users, each once
        self._check_finite("test")
        self._log_evaluation(self.evaluator.compute("test"))
        self.test_per_user = self.evaluator.per_user_table()
