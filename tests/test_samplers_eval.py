"""Evaluating a list of samplers (eval.samplers): name resolution, per-pass MMD, errors, and the CLI."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from conftest import run_cli
from hydra.utils import instantiate

from ctdm.callbacks import SampleEvaluation
from ctdm.callbacks.sample_evaluation import available_samplers, build_samplers
from ctdm.data.toy import eight_gaussians
from ctdm.samplers import DDPMSampler, ParallelSampler


def test_every_required_option_exists():
    assert {"ddpm", "ddim", "heun", "para_ddpm", "para_ddim", "para_heun"} <= set(available_samplers())


def test_names_build_samplers_with_the_selected_overrides_and_eval_steps():
    selected = {"_target_": "ctdm.samplers.DDPMSampler", "name": "ddpm", "steps": 7}
    ddpm, para = build_samplers(["ddpm", "para_ddpm"], selected)
    assert ddpm.steps == 7  # the selected option keeps its overrides
    assert isinstance(para, ParallelSampler) and para.steps == 1000 and para.window == 1000
    ddim, heun = build_samplers(["ddim", "para_heun"], selected, steps=9)
    assert ddim.steps == 9 and heun.steps == 9 and heun.window == 9


def test_unknown_or_repeated_names_are_refused():
    with pytest.raises(ValueError, match=r"eval\.samplers: unknown sampler 'nope'; allowed: \[.*'para_ddpm'"):
        SampleEvaluation(samplers=["ddpm", "nope"])
    with pytest.raises(ValueError, match=r"eval\.samplers lists \['ddpm'\] more than once"):
        SampleEvaluation(samplers=["ddpm", "ddpm"])
    with pytest.raises(ValueError, match=r"eval\.samplers is empty"):
        SampleEvaluation(samplers=[])
    with pytest.raises(ValueError, match=r"eval\.steps"):
        SampleEvaluation(samplers=["ddpm"], steps=0)


def test_config_list_composes(make_cfg):
    cfg = make_cfg(["eval.samplers=[ddpm,para_ddpm,heun]", "sampler.steps=20"])
    callback = instantiate(cfg.callbacks.sample_evaluation)
    assert [s.name for s in callback.samplers] == ["ddpm", "para_ddpm", "heun"]
    assert callback.samplers[0].steps == 20 and callback.samplers[1].steps == 1000
    default = instantiate(make_cfg(["sampler=para_ddim", "sampler.window=5"]).callbacks.sample_evaluation)
    assert [(s.name, s.window) for s in default.samplers] == [("para_ddim", 5)]


class _Logger:
    def __init__(self):
        self.logged = {}

    def log_metrics(self, metrics, step):
        self.logged.update(metrics)

    def save(self):
        pass


def test_evaluation_records_mmd_after_every_pass(tmp_path):
    law = eight_gaussians()
    reference = law.sample(200, torch.Generator().manual_seed(3))
    logger = _Logger()
    trainer = SimpleNamespace(
        world_size=1,
        global_rank=0,
        is_global_zero=True,
        global_step=5,
        loggers=[logger],
        datamodule=SimpleNamespace(x_val=reference),
    )
    module = SimpleNamespace(eps=law.eps, device=torch.device("cpu"), training=False, eval=lambda: None)
    module.train = lambda mode=True: None
    callback = SampleEvaluation(
        samplers=[DDPMSampler(steps=50), ParallelSampler(DDPMSampler(steps=50), tolerance=0.1)],
        num_samples=200,
        mmd_threshold=2e-3,
        output_dir=str(tmp_path),
    )
    metrics = callback.evaluate(trainer, module)
    for name in ("ddpm", "para_ddpm"):
        for key in ("mmd", "nfe", "passes", "seconds"):
            assert f"eval/{name}/{key}" in metrics and f"eval/{name}/{key}" in logger.logged
    assert metrics["eval/ddpm/passes"] == 50 and metrics["eval/para_ddpm/passes"] < 25
    curve = callback.curves["para_ddpm"]
    assert [c["pass"] for c in curve] == list(range(1, metrics["eval/para_ddpm/passes"] + 1))
    assert curve[-1]["mmd"] == pytest.approx(metrics["eval/para_ddpm/mmd"])
    assert curve[0]["mmd"] > 10 * max(curve[-1]["mmd"], 1e-4)  # one pass is far from converged
    hit = metrics["eval/para_ddpm/passes_to_threshold"]
    assert curve[hit - 1]["mmd"] <= 2e-3 and all(c["mmd"] > 2e-3 for c in curve[: hit - 1])
    saved = json.loads((tmp_path / "eval" / "para_ddpm_passes_step000005.json").read_text())
    assert saved["passes"] == curve
    for png in ("samples_ddpm_step000005.png", "samples_para_ddpm_step000005.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / "mmd_per_pass_para_ddpm_step000005.png").is_file()
    # Batched sampling gives the same samples (no per-pass curve then).
    batched = SampleEvaluation(
        samplers=[ParallelSampler(DDPMSampler(steps=50))], num_samples=200, batch_size=64
    )
    again = batched.evaluate(trainer, module)
    assert again["eval/para_ddpm/mmd"] == pytest.approx(metrics["eval/para_ddpm/mmd"], abs=1e-7)


@pytest.mark.slow
def test_cli_evaluates_a_sequential_and_a_parallel_sampler(tmp_path):
    out = tmp_path / "run"
    args = [
        "trainer.max_steps=30",
        "trainer.val_check_interval=15",
        "trainer.enable_progress_bar=false",
        "eval.num_samples=200",
        "eval.steps=100",
        "eval.samplers=[ddpm,para_ddpm]",
        f"hydra.run.dir={out}",
        "logger=csv",
    ]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    values = {k: float(v) for row in rows for k, v in row.items() if v not in ("", None)}
    assert values["eval/ddpm/nfe"] == 100 and values["eval/ddpm/passes"] == 100
    assert values["eval/para_ddpm/passes"] < 100 and values["eval/para_ddpm/nfe"] >= 100
    assert (out / "plots" / "mmd_per_pass_para_ddpm_step000030.png").is_file()
    bad = run_cli(["eval.samplers=[ddpm,fast]", f"hydra.run.dir={tmp_path / 'bad'}"], cwd=tmp_path)
    assert bad.returncode != 0 and "eval.samplers: unknown sampler 'fast'" in bad.stderr
