"""The CDL sweep (experiments.cdl_sweep): every arm composes with the dino preset, builds its loss and
takes a training step; a smoke sweep runs the real CLI into <out>/<arm>/seed<k>/ and resumes."""

import json

import pytest
import torch
from conftest import ROOT, cli_env, compose_config

from ctdm.build import build_module
from ctdm.diffusion import Draws, Reference
from ctdm.losses import ContrastiveDiffusionLoss, ITDLoss
from experiments import cdl_sweep


@pytest.mark.parametrize("arm", list(cdl_sweep.ARMS))
def test_every_arm_composes_and_takes_a_step(arm, tmp_path):
    cfg = compose_config(["experiment=paper_dino", *cdl_sweep.ARMS[arm]], tmp_path)
    module = build_module(cfg)
    cdl = module.loss_terms.get("cdl")
    if "_cdl_" in arm:  # the arm's name says what it is
        points = 2 if "_sf2_" in arm else int(arm.split("_p")[1].split("_")[0])
        assert isinstance(cdl, ContrastiveDiffusionLoss) and cdl.samples == "all" and cdl.points == points
        assert cdl.weight == float(arm.split("_w")[-1])
        assert cdl.draws == (Draws(stratified=True, focused=True) if "_sf2_" in arm else Draws())
    else:
        assert cdl is None
    if arm.startswith("itd"):
        assert module.loss_terms["itd"].draws == Draws(stratified=arm == "itd_stratified")
    else:
        assert not any(isinstance(t, ITDLoss) for t in module.loss_terms.values())
    module.set_data_var(torch.ones(2))
    assert isinstance(module.reference, Reference)
    loss, _ = module.objective(torch.randn(16, 2), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.slow
def test_smoke_sweep_runs_and_resumes(tmp_path, monkeypatch):
    arms = "itd,itd_cdl_sf2_w1"
    for key, value in cli_env().items():  # the jobs' environment: tests/ importable, W&B off
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    args = ["--stage", "coarse", "--arms", arms, "--smoke", "--jobs", "2", "--out", str(tmp_path)]
    done = cdl_sweep.main(args)
    assert sorted((name, code) for name, code, _ in done) == [("itd/seed0", 0), ("itd_cdl_sf2_w1/seed0", 0)]
    for arm in arms.split(","):
        overrides = (tmp_path / arm / "seed0" / ".hydra" / "overrides.yaml").read_text()
        assert all(o in overrides for o in cdl_sweep.ARMS[arm])
        assert (tmp_path / arm / "seed0" / "summary.json").exists()
    assert cdl_sweep.main(args) == []  # finished jobs are not run again
    # stage nfe scores the checkpoints with the few-step samplers, and the exact denoiser once
    nfe = ["--stage", "nfe", "--arms", arms, "--seeds", "0", "--out", str(tmp_path), "--samples", "32"]
    assert [code for _, code, _ in cdl_sweep.main([*nfe, "--exact"])] == [0, 0]
    names = {f"ddim{k}" for k in cdl_sweep.NFE_STEPS} | {f"heun{k}" for k in cdl_sweep.NFE_STEPS}
    names |= {f"para_ddim_tol{t}" for t in cdl_sweep.NFE_TOLERANCES}
    for scores in [json.loads((tmp_path / a / "seed0" / "nfe.json").read_text()) for a in arms.split(",")]:
        assert set(scores) == names
        assert scores["heun10"]["nfe"] == 19 and scores["ddim25"]["nfe"] == 25
    exact = json.loads((tmp_path / "exact_nfe.json").read_text())
    assert set(exact) == names and all(abs(v["mmd"]) < 1 for v in exact.values())


def test_unknown_arm_is_refused(capsys):
    with pytest.raises(SystemExit):
        cdl_sweep.main(["--arms", "itd,nonexistent"])
    assert "nonexistent" in capsys.readouterr().err
