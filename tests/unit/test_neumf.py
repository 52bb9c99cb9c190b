"""NeuMF: the formulas against a direct per-pair computation, chunked full ranking
independent of the chunk size, the branches' parameter names for init_from, bad options."""

from __future__ import annotations

import pytest
import torch

from conftest import train_and_report_moved
from recsys.errors import ConfigError
from recsys.models.chunked import chunk_shape, score_in_chunks
from recsys.models.init_from import load_components
from recsys.models.neumf import NeuMF

U, I = 7, 11


def reference(model: NeuMF, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """The paper's formulas on explicit pairs: ``[P]`` users and items -> ``[P]`` scores."""
    scores = []
    if model.branches != "mlp":
        g = model.gmf
        phi = g["user"](user) * g["item"](item)  # [P, Dg]
        scores.append(g["head"](phi).squeeze(-1))  # [P]
    if model.branches != "gmf":
        m = model.mlp
        z = torch.cat([m["user"](user), m["item"](item)], dim=-1)  # [P, 2 Dm] the concatenation
        for layer in m["tower"]:
            z = torch.relu(layer(z))  # [P, H_l]
        scores.append(m["head"](z).squeeze(-1))  # [P]
    if len(scores) == 1:
        return scores[0]
    return model.alpha * scores[0] + (1 - model.alpha) * scores[1]  # h = [alpha h_G; (1-alpha) h_M]


def full_reference(model: NeuMF) -> torch.Tensor:
    """``[U, I]`` scores, one pair at a time in one flat unchunked batch."""
    user, item = torch.meshgrid(torch.arange(U), torch.arange(I), indexing="ij")  # [U, I] each
    return reference(model, user.flatten(), item.flatten()).view(U, I)


def trained_like(**kwargs) -> NeuMF:
    torch.manual_seed(0)
    model = NeuMF(U, I, gmf_dim=4, mlp_layers=[8, 6, 3], init_std=0.5, **kwargs).eval()
    for p in model.parameters():  # non-zero biases, so that every term is exercised
        torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("branches", ["neumf", "gmf", "mlp"])
@pytest.mark.parametrize("chunk", [1, 3, 11, 12, 40, 10**6])
def test_chunked_full_ranking_equals_unchunked_formula(branches, chunk):
    model = trained_like(branches=branches, eval_chunk=chunk)
    users = torch.arange(U)
    with torch.no_grad():
        got = model.score(model.user_queries({"user": users}), model.item_embeddings())  # [U, I]
        want = full_reference(model)
    assert got.shape == (U, I)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_per_row_items_score_like_the_formula():
    """Sampled negatives (``[B, N, D]`` item vectors, one set per row) go through the same network."""
    model = trained_like()
    user = torch.tensor([0, 3, 6])  # [B]
    items = torch.tensor([[1, 2, 3, 4], [0, 0, 10, 5], [9, 8, 7, 6]])  # [B, N]
    with torch.no_grad():
        got = model.score(model.user_queries({"user": user}), model.item_vectors(items))  # [B, N]
        want = reference(model, user.unsqueeze(1).expand_as(items).flatten(), items.flatten()).view(3, 4)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_score_in_chunks_tiles_and_result_do_not_depend_on_the_chunk():
    full = torch.arange(35.0).view(5, 7)  # [5, 7]
    calls = []

    def block(rows, cols):
        calls.append(full[rows, cols].numel())
        return full[rows, cols]

    for chunk in (1, 2, 6, 7, 8, 15, 35, 1000):
        calls.clear()
        assert torch.equal(score_in_chunks(block, 5, 7, chunk), full)
        assert max(calls) <= chunk and sum(calls) == 35
    assert chunk_shape(5, 7, 15) == (2, 7) and chunk_shape(5, 7, 3) == (1, 3) and chunk_shape(5, 7, 100) == (5, 7)


def test_dropout_applies_in_training_only():
    model = trained_like(dropout=0.5)
    q, items = model.user_queries({"user": torch.arange(U)}), model.item_embeddings()
    with torch.no_grad():
        evaluated = model.score(q, items)
        model.train()
        torch.manual_seed(1)
        trained = model.score(q, items)
    assert not torch.allclose(evaluated, trained)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.score(q, items), evaluated)


def test_gradients_reach_both_branches():
    model = trained_like().train()
    q = model.encode({"user": torch.tensor([0, 1]), "item": torch.tensor([2, 3])}).query  # [2, D]
    model.score(q, model.item_vectors(torch.tensor([[2, 5], [3, 4]]))).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_init_from_copies_pretrained_gmf_and_mlp_into_neumf(tmp_path):
    """The paper's pretraining: GMF and MLP runs' branches (embeddings, tower, heads) are the
    NeuMF's after init_from with source model.gmf / model.mlp."""
    gmf, mlp = trained_like(branches="gmf"), trained_like(branches="mlp")
    for p in mlp.parameters():  # different values from gmf's
        torch.nn.init.normal_(p, std=0.3)
    paths = {}
    for name, model in (("gmf", gmf), ("mlp", mlp)):
        paths[name] = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, paths[name])
    neumf = NeuMF(U, I, gmf_dim=4, mlp_layers=[8, 6, 3])
    records = load_components(neumf, [
        {"ckpt": str(paths["gmf"]), "source": "model.gmf", "target": "gmf"},
        {"ckpt": str(paths["mlp"]), "source": "model.mlp", "target": "mlp"},
    ])
    assert [r["target"] for r in records] == ["gmf", "mlp"]
    for name, pretrained in (("gmf", gmf), ("mlp", mlp)):
        want = getattr(pretrained, name).state_dict()
        got = getattr(neumf, name).state_dict()
        assert set(got) == set(want)
        for key in want:
            assert torch.equal(got[key], want[key]), f"{name}.{key}"
    # with alpha 0.5 the fused score is the mean of the two pretrained models' scores
    neumf.eval()
    u = {"user": torch.arange(U)}
    with torch.no_grad():
        fused = neumf.score(neumf.user_queries(u), neumf.item_embeddings())
        mean = 0.5 * gmf.score(gmf.user_queries(u), gmf.item_embeddings()) + 0.5 * mlp.score(
            mlp.user_queries(u), mlp.item_embeddings()
        )
    torch.testing.assert_close(fused, mean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branches": "both"}, "model.branches must be one of neumf, gmf, mlp, got 'both'"),
        ({"gmf_dim": 0}, "model.gmf_dim must be an integer >= 1, got 0"),
        ({"mlp_layers": [63, 32]}, "model.mlp_layers must be"),
        ({"mlp_layers": [64]}, "model.mlp_layers must be"),
        ({"mlp_layers": "64"}, "model.mlp_layers must be"),
        ({"dropout": 1.0}, "model.dropout must be a number in [0, 1), got 1.0"),
        ({"alpha": 2}, "model.alpha must be a number in [0, 1], got 2"),
        ({"eval_chunk": 0}, "model.eval_chunk must be an integer >= 1"),
        ({"train_rows": "all"}, "model.train_rows must be one of events, users"),
    ],
)
def test_bad_options_give_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        NeuMF(U, I, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_option_stops_the_run_before_training(cfg_factory):
    """Through the run's wiring, the user reads the constructor's own one line."""
    from recsys.outputs import one_line, unwrap
    from recsys.wiring import build

    with pytest.raises(Exception) as err:
        build(cfg_factory(["model=neumf", "model.mlp_layers=[64,0]"]))
    line = one_line(unwrap(err.value))
    assert line.startswith("model.mlp_layers must be") and "\n" not in line


@pytest.mark.parametrize("loss", ["bce", "bpr", "ce", "ssm", "nss", "csar"])
def test_composes_with_every_loss_and_its_sampler(cfg_factory, loss):
    """A few steps of the module's own objective with each loss's default sampler (uniform,
    full catalogue, popularity, in-batch) are finite and move every branch's parameters."""
    from recsys.wiring import build

    cfg = cfg_factory(["model=neumf", f"loss={loss}", "data.dataset.n_users=60", "data.dataset.n_items=60", "data.dataset.n_clusters=4",
                       "data.batch_size=32", "model.dropout=0.1"])
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    moved = train_and_report_moved(module, datamodule)
    assert moved == {"gmf", "mlp"}


def test_paper_command_composes(cfg_factory):
    """The yaml header's command: BCE with 4 uniform negatives per positive."""
    cfg = cfg_factory(["model=neumf", "loss=bce", "sampler=uniform", "sampler.num_negatives=4"])
    assert cfg.loss._target_.endswith("BCE") and cfg.sampler._target_.endswith("UniformSampler")
    assert cfg.sampler.num_negatives == 4
