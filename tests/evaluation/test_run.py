"""evaluate_samplers without Lightning: every sampler on the same seeds, the same metrics on 1, 2 or 3
ranks, metric names and order as logged, the threshold pass, and the files write_outputs leaves."""

import json

import numpy as np
import pytest
import torch
from threaded_ranks import ThreadedRanks

from ctdm.data.toy import eight_gaussians
from ctdm.evaluation import EvaluationResult, MMDScorer, SamplerResult, evaluate_samplers, write_outputs
from ctdm.samplers import DDPMSampler, ParallelSampler

LAW = eight_gaussians()
REFERENCE = LAW.sample(300, torch.Generator().manual_seed(3))


def _evaluate(ranks=None, **options) -> EvaluationResult:
    samplers = [DDPMSampler(steps=40), ParallelSampler(DDPMSampler(steps=40), tolerance=0.1)]
    options = {"num_samples": 150, "seed": 2, "threshold": 3e-3, **options}
    if ranks is not None:
        options["ranks"] = ranks
    return evaluate_samplers(samplers, LAW.eps, MMDScorer(REFERENCE), (2,), **options)


def _without_seconds(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("/seconds")}


def test_metric_names_in_the_order_they_are_logged():
    result = _evaluate()
    ddpm, para = result.samplers
    assert list(result.metrics) == [
        *(f"eval/ddpm/{k}" for k in ("mmd", "num_samples", "nfe", "passes", "seconds")),
        *(f"eval/para_ddpm/{k}" for k in ("mmd", "num_samples", "nfe", "passes", "seconds")),
        "eval/para_ddpm/passes_to_threshold",
        "eval/para_ddpm/nfe_to_threshold",
        "eval/normal_mmd",
    ]
    assert ddpm.curve is None and not ddpm.parallel and para.parallel
    assert para.curve[-1]["mmd"] == pytest.approx(para.scores["mmd"])  # the last pass is the result
    hit = para.threshold_hit
    assert hit["mmd"] <= 3e-3 and all(c["mmd"] > 3e-3 for c in para.curve[: hit["pass"] - 1])
    # the same noise: within the Picard tolerance of each other (another seed would be O(1) away)
    assert float((para.samples - ddpm.samples).abs().max()) < 0.05
    assert result.metrics["eval/normal_mmd"] > 10 * abs(ddpm.scores["mmd"])


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_give_the_metrics_of_one_process(world):
    one = _evaluate()
    for result in ThreadedRanks(world).run(lambda ranks: _evaluate(ranks)):
        metrics = _without_seconds(result.metrics)
        # no per-pass curve (a pass holds one rank's share), so no passes_to_threshold either
        expected = {k: v for k, v in _without_seconds(one.metrics).items() if "threshold" not in k}
        assert metrics == pytest.approx(expected, rel=1e-12)
        assert result.curves == {}
        for a, b in zip(result.samplers, one.samples.values(), strict=True):
            torch.testing.assert_close(a.samples, b, rtol=0, atol=0)


def test_batches_give_the_same_metrics_without_curves():
    one, batched = _evaluate(), _evaluate(batch_size=40)
    assert _without_seconds(batched.metrics) == pytest.approx(
        {k: v for k, v in _without_seconds(one.metrics).items() if "threshold" not in k}, rel=1e-12
    )


def test_write_outputs_leaves_plots_and_curves(tmp_path):
    result = _evaluate()
    plots = write_outputs(result, tmp_path, step=7, reference=REFERENCE)
    assert list(plots) == ["eval/ddpm/samples", "eval/para_ddpm/samples", "eval/para_ddpm/mmd_per_pass"]
    for path in plots.values():
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert plots["eval/ddpm/samples"] == tmp_path / "plots" / "samples_ddpm_step000007.png"
    saved = json.loads((tmp_path / "eval" / "para_ddpm_passes_step000007.json").read_text())
    assert saved == {
        "sampler": "para_ddpm",
        "step": 7,
        "threshold": 3e-3,
        "passes": result.curves["para_ddpm"],
    }


def test_a_record_names_its_metrics():
    record = SamplerResult("heun", torch.zeros(3, 2), {"mmd": 0.5, "num_samples": 3}, 35.0, 18, 1.25)
    assert record.metrics == {
        "eval/heun/mmd": 0.5,
        "eval/heun/num_samples": 3,
        "eval/heun/nfe": 35.0,
        "eval/heun/passes": 18,
        "eval/heun/seconds": 1.25,
    }


@pytest.mark.parametrize("world", [1, 3])
def test_streaming_in_chunks_writes_every_sample_and_keeps_a_preview(world, tmp_path):
    """Chunks of 7 (the last one short, ranks with unequal shares): the samples file holds every sample in
    index order, as one batch draws them; the result keeps the first `keep`; the metrics do not change."""
    one = _evaluate()

    def streamed(ranks):
        return _evaluate(ranks, batch_size=7, samples_dir=tmp_path / str(world), keep=10)

    results = ThreadedRanks(world).run(streamed) if world > 1 else [streamed(None)]
    for result in results:
        for got, want in zip(result.samplers, one.samplers, strict=True):
            torch.testing.assert_close(got.samples, want.samples[:10], rtol=0, atol=0)
            assert got.scores == pytest.approx(want.scores, rel=1e-12)
    for want in one.samplers:
        path = tmp_path / str(world) / f"samples_{want.name}.npy"
        assert results[0].samplers[[s.name for s in one.samplers].index(want.name)].samples_file == path
        torch.testing.assert_close(torch.from_numpy(np.load(path)), want.samples, rtol=0, atol=0)
    assert not list((tmp_path / str(world)).glob(".*tmp"))  # no temporary file left


def test_a_failed_evaluation_leaves_no_samples_file(tmp_path):
    class Broken(DDPMSampler):
        calls = 0

        def __call__(self, *args, **kwargs):
            Broken.calls += 1
            if Broken.calls == 3:
                raise RuntimeError("out of memory")
            return super().__call__(*args, **kwargs)

    with pytest.raises(RuntimeError):
        evaluate_samplers(
            [Broken(steps=4)],
            LAW.eps,
            MMDScorer(REFERENCE),
            (2,),
            num_samples=50,
            batch_size=10,
            samples_dir=tmp_path,
        )
    assert list(tmp_path.iterdir()) == []  # neither samples_ddpm.npy nor its temporary file


def test_the_end_of_run_table_has_a_row_per_sampler_and_a_column_per_metric():
    from ctdm.evaluation import sampler_table

    metrics = {
        "eval/ddpm/fid": 12.345,
        "eval/ddpm/kid": 0.0123,
        "eval/ddpm/kid_std": 0.0021,
        "eval/ddpm/num_samples": 100,
        "eval/ddpm/passes": 1000,
        "eval/ddpm/nfe": 1000.0,
        "eval/ddpm/seconds": 3.21,
        "eval/para_ddpm/fid": 12.5,
        "eval/para_ddpm/passes": 26,
        "eval/normal_mmd": 0.5,  # not a sampler's
        "val/nll": 1.0,
    }
    header, ddpm, para = sampler_table(metrics, indent="")
    assert header.split() == ["sampler", "samples", "FID", "KID", "passes", "NFE", "seconds"]
    assert ddpm.split() == ["ddpm", "100", "12.35", "0.0123", "±", "0.0021", "1000", "1000", "3.21"]
    assert para.split() == ["para_ddpm", "-", "12.5", "-", "26", "-", "-"]
    assert header.index("FID") == ddpm.index("12.35") == para.index("12.5")  # aligned columns
    assert sampler_table({"val/nll": 1.0}) == []
