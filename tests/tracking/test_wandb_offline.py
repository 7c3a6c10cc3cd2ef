"""A real offline W&B sweep: the run files carry the config, the group, the tags and the pass curve.

Everything is read back from what the runs wrote (the `.wandb` record log, the media files and the
CSV logger's hparams.yaml), not from Python objects.
"""

import json
import struct
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

pytestmark = pytest.mark.slow


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


def test_offline_sweep_runs_carry_config_group_tags_and_curves(tmp_path):
    env = {
        "WANDB_MODE": "offline",
        **{
            k: str(tmp_path / "wandb_home") for k in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")
        },
    }
    args = ["-m", "debug=smoke", "loss=contrastive", "loss.cdl.weight=0.1", "sampler=para_ddpm", "seed=0,1"]
    result = run_cli(args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    for job in (0, 1):
        out = sweep / str(job)
        (wandb_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
        records = read_wandb_records(wandb_file)
        (run,) = [r.run for r in records if r.HasField("run")]
        assert (
            run.display_name
            == f"debug=smoke,loss=contrastive,loss.cdl.weight=0.1,sampler=para_ddpm,seed={job}"
        )
        assert run.run_group == sweep.name  # every job of the sweep in one group
        assert list(run.tags) == [
            "data=eight_gaussians",
            "model=mlp",
            "loss=contrastive",
            "sampler=para_ddpm",
            "debug=smoke",
        ]
        assert run.job_type == "train"
        config = {
            u.key: json.loads(u.value_json) for r in records if r.HasField("config") for u in r.config.update
        }
        assert config["loss"]["cdl"]["weight"] == 0.1 and config["seed"] == job
        assert config["eval"]["num_samples"] == 16  # the resolved value, not `${...}`

        history = {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for r in records
            if r.HasField("history")
            for item in r.history.item
        }
        assert history["eval/para_ddpm/samples/_type"] == "images/separated"
        table_file = wandb_file.parent / "files" / history["eval/para_ddpm/mmd_per_pass_curve_table/path"]
        table = json.loads(table_file.read_text())
        assert table["columns"] == ["pass", "nfe", "mmd"] and len(table["data"]) >= 1
        passes = json.loads(next((out / "eval").glob("para_ddpm_passes_step*.json")).read_text())["passes"]
        assert [row[0] for row in table["data"]] == [p["pass"] for p in passes]

        hparams = yaml.safe_load((out / "csv" / "hparams.yaml").read_text())
        assert hparams["loss"]["cdl"]["weight"] == 0.1 and hparams["seed"] == job
