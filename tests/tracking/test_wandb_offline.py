"""Real offline W&B runs, read back from what they wrote (the `.wandb` record log, the media files), not
from Python objects: a sweep's runs are named by the swept keys and grouped by their sweep, carry the
config with one number type per key, every final metric in their summary and the curves as tables that
a dashboard overlays; an evaluation joins its training run's group and records that run's id."""

import json
import struct
from pathlib import Path

import pytest
from conftest import offline_wandb_env, run_cli

pytestmark = pytest.mark.slow
JOBS = {0: ("0.1", 0), 1: ("0.1", 1), 2: ("1", 0), 3: ("1", 1)}  # job -> (loss.cdl.weight, seed)


def read_wandb_records(path: Path) -> list:
    """The protobuf records of a `.wandb` file (wandb-core's LevelDB-style log: a 7-byte header,
    then 32 KiB blocks of chunks, each `<crc32 uint32, length uint16, type uint8>` + payload;
    type 1 is a whole record, 2/3/4 its first/middle/last part)."""
    from wandb.proto import wandb_internal_pb2

    buf, block = path.read_bytes(), 32768
    ident, _magic, _version = struct.unpack("<4sHB", buf[:7])
    assert ident == b":W&B", f"{path} is not a W&B record log"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(buf):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", buf[pos : pos + 7])
        pending += buf[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


class OfflineRun:
    """What one run folder's offline W&B run recorded."""

    def __init__(self, folder: Path):
        (self.file,) = folder.glob("wandb/offline-run-*/run-*.wandb")
        records = read_wandb_records(self.file)
        (self.run,) = [r.run for r in records if r.HasField("run")]
        self.config_json = {
            u.key: u.value_json for r in records if r.HasField("config") for u in r.config.update
        }
        self.config = {k: json.loads(v) for k, v in self.config_json.items()}
        self.summary = {
            u.key or "/".join(u.nested_key): json.loads(u.value_json)
            for r in records
            if r.HasField("summary")
            for u in r.summary.update
        }
        self.history = {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for r in records
            if r.HasField("history")
            for item in r.history.item
        }

    def table(self, key: str) -> dict:
        return json.loads((self.file.parent / "files" / self.history[f"{key}_table/path"]).read_text())


def test_sweep_runs_are_named_and_grouped_by_what_was_swept(weight_sweep_run):
    sweep = weight_sweep_run
    for job, (weight, seed) in JOBS.items():
        out = sweep / str(job)
        wandb = OfflineRun(out)
        assert wandb.run.display_name == f"loss.cdl.weight={weight},seed={seed}"  # only what the sweep varies
        assert wandb.run.run_group == "loss.cdl.weight,seed/sweep"  # every job of the sweep in one group
        assert wandb.run.job_type == "train"
        assert list(wandb.run.tags) == [
            "data=eight_gaussians",
            "model=mlp",
            "loss=contrastive",
            "sampler=para_ddpm",
            "debug=smoke",
        ]
        # the resolved config, nested; 1 is logged as 1.0 like 0.1: one column of floats to group by
        assert wandb.config["loss"]["cdl"]["weight"] == float(weight) and wandb.config["seed"] == seed
        assert type(wandb.config["loss"]["cdl"]["weight"]) is float and type(wandb.config["seed"]) is int
        assert wandb.config["eval"]["num_samples"] == 16  # the resolved value, not `${...}`

        # the summary holds every final metric of summary.json, not only the keys logged last
        metrics = json.loads((out / "summary.json").read_text())["metrics"]
        assert set(metrics) <= set(wandb.summary), sorted(set(metrics) - set(wandb.summary))
        for key, value in metrics.items():
            assert wandb.summary[key] == pytest.approx(value, rel=1e-6), key
        # the training cost among them: time in training steps, steps and network rows
        assert wandb.summary["train/steps"] == 4 and wandb.summary["train/seconds"] > 0
        assert wandb.summary["train/rows_forward"] >= wandb.summary["train/rows_backward"] > 0

        # curves as tables under one key per run, so a panel overlays the runs
        passes = json.loads(next((out / "eval").glob("para_ddpm_passes_step*.json")).read_text())["passes"]
        table = wandb.table("eval/para_ddpm/mmd_per_pass_curve")
        assert table["columns"] == ["pass", "nfe", "mmd"] and [r[0] for r in table["data"]] == [
            p["pass"] for p in passes
        ]
        mse = wandb.table("val/mse_logsnr_curve")
        assert mse["columns"] == ["log_snr", "mse"] and len(mse["data"]) == 8  # debug=smoke: 8 levels
        assert mse["data"] == sorted(mse["data"]) and all(m > 0 for _, m in mse["data"])
        assert wandb.history["eval/para_ddpm/samples/_type"] == "images/separated"


def test_an_evaluation_joins_its_training_runs_group(weight_sweep_run, tmp_path):
    trained = weight_sweep_run / "2"
    out = tmp_path / "eval"
    args = [f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", "sampler=ddpm", f"hydra.run.dir={out}"]
    result = run_cli(args, cwd=tmp_path, env=offline_wandb_env(tmp_path), module="ctdm.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    training, evaluation = OfflineRun(trained), OfflineRun(out)
    assert evaluation.run.job_type == "eval" and evaluation.run.run_group == training.run.run_group
    # named after the run it scored and its own overrides, not the groups ctdm.evaluate re-chose itself
    assert evaluation.run.display_name == "loss.cdl.weight=1,seed=0 eval sampler=ddpm"
    assert evaluation.config["trained_run"]["id"] == training.run.run_id
    assert evaluation.config["trained_run"]["step"] == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert evaluation.summary["eval/ddpm/mmd"] == pytest.approx(metrics["eval/ddpm/mmd"], rel=1e-6)
    assert "W&B, offline: wandb sync" in result.stdout and "sampler  samples  MMD^2" in result.stdout
