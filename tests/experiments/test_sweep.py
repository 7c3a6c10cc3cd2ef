"""The sweep extra: a SLURM launcher config that composes, an Optuna search that runs 2 trials."""

import pytest
import yaml
from conftest import CONF, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra


def test_slurm_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the sweep extra")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm", "experiment=paper_dino"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1)


@pytest.mark.slow
def test_optuna_search_runs_two_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the sweep extra")
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=cdl_optuna", "hydra.sweeper.n_trials=2", "loss=mse_cdl", "debug=smoke"]
    args += ["optimized_metric=eval/ddpm/mmd", "logger=csv", f"hydra.sweep.dir={sweep}"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(sweep.glob("*/summary.json"))) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"loss.cdl.weight", "loss.cdl.points"}
    assert 1e-3 <= best["best_params"]["loss.cdl.weight"] <= 10
