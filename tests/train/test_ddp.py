"""Data parallel: 1 rank and 2 CPU ranks (`trainer=ddp_cpu`, Lightning re-launches the command) on the
same global batch.

What can match exactly: every step's global batch (GlobalBatchOrder gives rank r the r-th share of the
1-rank batch), the initial weights (same seed), DDP's averaged gradient (= the 1-rank gradient of the
batch mean, equal shares), and sample evaluation (sample i has seed (seed << 32) + i on any rank). What
cannot: the training noise, which each rank draws for its own rows from (seed, step, rank), so the
real losses agree only in distribution. The exact comparison therefore trains with a loss whose levels
and noise are fixed by each row (helpers.RowNoiseMSE): weights, the logged global-batch losses,
val/loss and the evaluation metrics must then agree up to float summation order.
"""

import csv
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_env, run_cli

STEPS = 6
RUN = [
    "debug=smoke",
    "logger=csv",
    "loss.mse._target_=helpers.RowNoiseMSE",
    "data.train_size=64",  # 4 global batches of 16 per epoch: the run crosses an epoch
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "trainer.log_every_n_steps=1",
]


def _run(tmp_path: Path, name: str, trainer: str) -> Path:
    out = tmp_path / name
    cwd = tmp_path / f"cwd_{name}"
    cwd.mkdir()
    result = run_cli(
        [*RUN, f"trainer={trainer}", f"hydra.run.dir={out}"],
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing written where it was launched from
    return out


def _metrics(out: Path) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    with open(out / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value and key not in ("step", "epoch"):
                    table.setdefault(key, {})[int(row["step"])] = float(value)
    return table


@pytest.mark.slow
def test_one_and_two_ranks_train_and_evaluate_alike(tmp_path):
    one = _run(tmp_path, "one", "cpu")
    two = _run(tmp_path, "two", "ddp_cpu")

    # One output folder per run: rank 1 adds only its Hydra log, no folder of its own.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd_one", "cwd_two", "one", "two"]
    extra = {p.name for p in two.iterdir()} - {p.name for p in one.iterdir()}
    assert extra == {"train_ddp_process_1.log"}, extra

    _assert_alike(one, two)


def _assert_alike(one: Path, two: Path) -> None:
    """Runs `one` (1 rank) and `two` (2 ranks): the same weights, logged losses and evaluation."""
    a = torch.load(one / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(two / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == STEPS
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    # The network rows of the whole job: the 16 rows of each global batch, however many ranks share it.
    for key in ("rows_forward", "rows_backward"):
        assert a["ctdm_training_cost"][key] == b["ctdm_training_cost"][key] == 16 * STEPS, key

    m1, m2 = _metrics(one), _metrics(two)
    assert sorted(m1["train/loss"]) == sorted(m2["train/loss"]) == list(range(STEPS))
    for step, value in m1["train/loss"].items():  # the global batch's loss, logged by rank 0
        assert m2["train/loss"][step] == pytest.approx(value, rel=1e-5), step
    assert m2["val/loss"][STEPS - 1] == pytest.approx(m1["val/loss"][STEPS - 1], rel=1e-5)
    eval_keys = [k for k in m1 if k.startswith("eval/") and not k.endswith("seconds")]
    assert "eval/ddpm/mmd" in eval_keys
    for key in eval_keys:
        assert list(m2[key].values()) == pytest.approx(list(m1[key].values()), rel=1e-4, abs=1e-7), key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_of_one_process_train_like_one_rank(tmp_path):
    """Multi-node DDP simulated on this machine: 2 nodes x 1 process (trainer.num_nodes=2 devices=1,
    gloo over localhost), each node's process started by hand as a cluster would (the same command, its
    NODE_RANK, one MASTER_ADDR/PORT). The weights, losses and evaluation equal the 1-rank run's, as the
    1-vs-2-rank test above asks of 2 processes on one node."""
    one = _run(tmp_path, "one", "cpu")
    out = tmp_path / "nodes"
    port = _free_port()
    command = [sys.executable, "-m", "ctdm.train", *RUN, "trainer=ddp_cpu", "trainer.devices=1"]
    command += ["trainer.num_nodes=2", f"hydra.run.dir={out}"]
    nodes = []
    for node in (0, 1):
        env = cli_env({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node)})
        extra = [] if node == 0 else ["hydra.output_subdir=null", "hydra.job.name=train_node_1"]
        cwd = tmp_path / f"cwd_node{node}"
        cwd.mkdir()
        nodes.append(
            subprocess.Popen(
                [*command, *extra],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1][1]  # node 1 is the second rank of one group
    assert (out / "summary.json").is_file() and not (out / ".ctdm.lock").exists()
    _assert_alike(one, out)


@pytest.mark.slow
def test_checkpointed_cdl_chunks_train_under_ddp(tmp_path):
    """The CDL's rows in checkpointed chunks (loss.cdl.max_batch) under DDP's gradient hooks, with
    Lightning's automatic optimisation: the recomputation in the backward pass marks every parameter
    ready once, and the run trains to the end."""
    out = tmp_path / "run"
    args = ["debug=smoke", "logger=csv", "loss=itd_cdl", "loss.cdl.points=2", "loss.cdl.max_batch=5"]
    result = run_cli([*args, "trainer=ddp_cpu", "trainer.max_steps=3", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CDL cost: 32 network rows per step beside the base loss's 8" in result.stdout + result.stderr
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
