"""Evaluating several samplers (eval.samplers, composed by Hydra): ready samplers, per-pass MMD, the CLI."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from conftest import CONF, run_cli
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ctdm.callbacks import SampleEvaluation
from ctdm.data.toy import eight_gaussians
from ctdm.samplers import DDPMSampler, ParallelSampler

SAMPLERS = sorted(p.stem for p in (CONF / "sampler").glob("[!_]*.yaml"))


def test_every_sampler_option_can_be_evaluated(make_cfg):
    assert {"ddpm", "ddim", "heun", "euler", "para_ddpm", "para_ddim", "para_heun"} <= set(SAMPLERS)
    # ctdm.config makes each conf/sampler option an eval/samplers option: no wrapper file to forget
    cfg = make_cfg([f"eval/samplers=[{','.join(SAMPLERS)}]"])
    assert sorted(cfg.eval.samplers) == SAMPLERS
    assert all(
        cfg.eval.samplers[name]._target_ == make_cfg([f"sampler={name}"]).sampler._target_
        for name in SAMPLERS
    )


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_option_reaches_the_callback_as_a_ready_sampler(name, make_cfg):
    cfg = make_cfg([f"eval/samplers=[{name}]", "eval.steps=4"])
    (sampler,) = instantiate(cfg.callbacks.sample_evaluation).samplers
    assert sampler.name == name and sampler.steps == 4
    samples, _ = sampler(eight_gaussians().eps, (2,), torch.arange(3))
    assert samples.shape == (3, 2) and torch.isfinite(samples).all()


def test_several_samplers_with_their_overrides_and_all_in_the_saved_config(make_cfg):
    cfg = make_cfg(["eval/samplers=[ddpm,para_ddpm]", "eval.samplers.para_ddpm.tolerance=0.05"])
    ddpm, para = instantiate(cfg.callbacks.sample_evaluation).samplers
    assert isinstance(ddpm, DDPMSampler) and (ddpm.name, ddpm.steps) == ("ddpm", 1000)
    assert isinstance(para, ParallelSampler) and (para.name, para.tolerance, para.steps) == (
        "para_ddpm",
        0.05,
        1000,
    )
    # As train.py stores it in checkpoints (the slow CLI test reads Hydra's own .hydra/config.yaml).
    run_config = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    saved = OmegaConf.to_container(run_config, resolve=True)["eval"]["samplers"]
    assert sorted(saved) == ["ddpm", "para_ddpm"] and saved["para_ddpm"]["tolerance"] == 0.05


def test_the_default_evaluates_the_chosen_sampler_with_its_overrides(make_cfg):
    cfg = make_cfg(["sampler=para_ddim", "sampler.window=5", "sampler.base.eta=0.3"])
    (sampler,) = instantiate(cfg.callbacks.sample_evaluation).samplers
    assert (sampler.name, sampler.window, sampler.steps, sampler.base.eta) == ("para_ddim", 5, 100, 0.3)
    cfg = make_cfg(["sampler=heun", "sampler.steps=7", "eval/samplers=[selected,para_ddpm]"])
    assert [(s.name, s.steps) for s in instantiate(cfg.callbacks.sample_evaluation).samplers] == [
        ("heun", 7),
        ("para_ddpm", 1000),
    ]


def test_eval_steps_reaches_every_sampler(make_cfg):
    cfg = make_cfg(["eval/samplers=[ddim,para_heun,selected]", "eval.steps=9"])
    ddim, heun, ddpm = instantiate(cfg.callbacks.sample_evaluation).samplers
    assert (ddim.steps, heun.steps, heun.window, ddpm.steps) == (9, 9, 9, 9)


def test_empty_or_repeated_samplers_are_refused():
    with pytest.raises(ValueError, match=r"eval\.samplers has \['ddpm'\] more than once"):
        SampleEvaluation(samplers=[DDPMSampler(steps=5), DDPMSampler(steps=7)])
    with pytest.raises(ValueError, match=r"eval\.samplers is empty"):
        SampleEvaluation(samplers={})


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
    module = SimpleNamespace(
        parameterization=law, device=torch.device("cpu"), training=False, eval=lambda: None
    )
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
        "eval/samplers=[ddpm,para_ddpm]",
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
    saved = OmegaConf.load(out / ".hydra" / "config.yaml").eval.samplers
    assert (
        sorted(saved) == ["ddpm", "para_ddpm"]
        and saved.para_ddpm.base._target_ == "ctdm.samplers.DDPMSampler"
    )
    bad = run_cli(["eval/samplers=[ddpm,fast]", f"hydra.run.dir={tmp_path / 'bad'}"], cwd=tmp_path)
    assert bad.returncode != 0 and "Could not load 'eval/samplers/fast'" in bad.stderr
