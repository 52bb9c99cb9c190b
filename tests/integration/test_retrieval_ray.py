"""The reward service as a named Ray actor (issue 13, item 5): a round trip through a second
handle on a local 1-CPU cluster, and ``python -m recsys.serve`` reached by a client in
another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import reward_service  # noqa: E402
from recsys.errors import ConfigError, DataError  # noqa: E402
from recsys.retrieval.encoders.hashing import HashingEncoder  # noqa: E402
from recsys.retrieval.rewards import RecRewardFunction  # noqa: E402
from recsys.retrieval.service import RetrievalService  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ITEMS = [f"item {i} colour {'red' if i % 2 else 'blue'} size {i % 5}" for i in range(40)]
NAMESPACE = "rl4rec-test"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=1, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False)
    yield
    ray.shutdown()


def test_round_trip_through_a_named_actor_from_a_second_handle(cluster):
    encoder = HashingEncoder(dim=32)
    created = ray.remote(RetrievalService).options(name="RetrievalService", namespace=NAMESPACE).remote(
        encoder, item_texts={"toy": ITEMS}
    )
    assert ray.get(created.datasets.remote()) == {"toy": 40}
    handle = ray.get_actor("RetrievalService", namespace=NAMESPACE)  # what another trainer does
    local = RetrievalService(encoder, item_texts={"toy": ITEMS})
    texts = ["red size 3", "blue item size 4"]
    kwargs = dict(dataset_name="toy", targets=[3, 4], neg_items=[[1, 2, 5], [6, 7, 8]])
    remote_scores = ray.get(handle.calculate_reward.remote(texts, **kwargs))
    torch.testing.assert_close(remote_scores, local.calculate_reward(texts, **kwargs))
    assert remote_scores.shape == (2, 4)

    # the reward function finds the actor by name and gives what the in-process service gives
    by_name = RecRewardFunction("RetrievalService", namespace=NAMESPACE, dataset_name="toy", reward_type="mixed")
    in_process = RecRewardFunction(dataset_name="toy", reward_type="mixed", service=local)
    call = dict(generated_texts=texts, targets=[3, 4], histories=[[1, 3], [0]])
    assert by_name(**call) == pytest.approx(in_process(**call))

    with pytest.raises(ray.exceptions.RayTaskError, match="unknown dataset 'nope'"):
        ray.get(handle.calculate_reward.remote(texts, dataset_name="nope"))
    ray.kill(created)


def test_looking_up_a_missing_actor_is_one_line(cluster):
    fn = RecRewardFunction("NoSuchService", namespace=NAMESPACE, dataset_name="toy")
    with pytest.raises(ConfigError, match="no actor 'NoSuchService' in Ray namespace"):
        fn(generated_texts=["x"], targets=[0])


CLIENT = """
import ray, sys
ray.init(address=sys.argv[1], namespace=sys.argv[2], log_to_driver=False)
service = ray.get_actor("RetrievalService", namespace=sys.argv[2])
scores = ray.get(service.calculate_reward.remote(
    ["Toy Story (1995) | Animation", "a war film"], dataset_name="ml1m", targets=[0, 1],
    neg_items=[[5, 6, 7], [8, 9, 10]]))
print("SHAPE", tuple(scores.shape))
"""


def test_serve_starts_an_actor_that_a_client_in_another_process_reaches(tmp_path, data_dir):
    """``python -m recsys.serve data=ml1m encoder=hashing``, then a second process."""
    if not (Path(data_dir) / "ml-1m" / "ml-1m.txt").is_file():
        pytest.skip("ml-1m not in the data directory")
    env = {**os.environ, "RECSYS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    namespace = "serve-test"
    args = ["data=ml1m", "encoder=hashing", f"namespace={namespace}", f"cache_dir={tmp_path / 'cache'}",
            "local_cpus=1", f"hydra.run.dir={tmp_path / 'run'}"]
    with reward_service(args, env, r"RetrievalService ready: .* at (\S+), serving ml1m \(3,416 items\)") as (address, env):
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, address, namespace], cwd=REPO, env=env, capture_output=True,
            text=True, timeout=120,
        )
        assert "SHAPE (2, 4)" in client.stdout, client.stdout + client.stderr


def test_serve_refuses_an_unknown_encoder_with_one_line_and_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recsys.serve", "encoder=nope", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: unknown encoder 'nope': available encoders are hashing, minilm (conf/serve/encoder/)"
    ]


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["namespaec=x"], ConfigError, "namespaec is not in the config"),
        (["detached=true"], ConfigError, "detached=true needs a Ray cluster that outlives this process"),
        (["data=[nope]"], ConfigError, "unknown data 'nope': available datasets are"),
        (["data=[gowalla]"], DataError, "gowalla has no item texts"),
        (["data=[]"], ConfigError, "no dataset to serve"),
    ],
)
def test_serve_refuses_bad_settings_before_starting_ray(monkeypatch, data_dir, overrides, error, message):
    """Each problem is one line, found before any Ray process starts."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from recsys.config import CONF_DIR, check_composes
    from recsys.serve import start

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    with pytest.raises(error) as info:
        check_composes(overrides, CONF_DIR / "serve", "serve")
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR / "serve"), version_base="1.3"):
            cfg = compose("serve", overrides=[*overrides, f"data_dir={data_dir}", "encoder=hashing"])
        start(cfg)
    GlobalHydra.instance().clear()
    assert message in str(info.value) and "\n" not in str(info.value)
