"""last.ckpt holds the latest weights at every validation, also when the best checkpoint does not move
(Lightning 2.6's save_last writes only when the monitored best improves)."""

import torch
from conftest import compose_config

from ctdm.train import train


def test_last_checkpoint_is_the_final_step_when_the_best_is_older(tmp_path):
    # mode=max makes the "best" validation loss the first (highest) one, so best and last differ.
    overrides = ["debug=smoke", "logger=csv", "trainer.max_steps=12", "trainer.val_check_interval=4"]
    overrides += ["callbacks.model_checkpoint.mode=max", "model.optimizer.lr=0.05"]
    summary = train(compose_config(overrides, tmp_path / "run"))
    last = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=False)
    best = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)
    assert summary["last_checkpoint"].endswith("last.ckpt") and last["global_step"] == 12
    assert best["global_step"] < 12 and summary["best_checkpoint"] != summary["last_checkpoint"]
