"""Sample evaluation, Lightning-free: which samples a process draws, drawing them, scoring them, and the
results as plain records.

    scorer = scorer_for(datamodule)  # MMD for low-dimensional data, FID/KID for images
    result = evaluate_samplers(samplers, model.eps, scorer, shape, num_samples=2000, seed=0)
    result.metrics  # {"eval/<sampler>/mmd": ..., "eval/<sampler>/nfe": ...}
    write_outputs(result, run_folder, step, datamodule.x_val)  # sample plots, per-pass curves

Samples are drawn, scored and (with `samples_dir`) written in chunks of `batch_size`, so memory follows
the chunk, not the number of samples; `ctdm.evaluation.budget` estimates it before a run starts.
Under DDP pass `Ranks(rank, world, all_gather)`: each rank draws its share of the sample indices with
the same per-sample seeds, so 1 and N ranks give the same samples and metrics.
"""

from ctdm.evaluation.generate import Generation, gather, gather_stats, generate, generate_chunks
from ctdm.evaluation.records import EvaluationResult, SamplerResult, first_below, sampler_table
from ctdm.evaluation.run import evaluate_samplers, write_outputs
from ctdm.evaluation.sample_file import SampleFile
from ctdm.evaluation.scorers import (
    ImageScorer,
    MMDScorer,
    data_name,
    image_scorer,
    is_image_data,
    scorer_for,
)
from ctdm.evaluation.seeds import Ranks, rank_share, sample_seeds

__all__ = [
    "EvaluationResult",
    "Generation",
    "ImageScorer",
    "MMDScorer",
    "Ranks",
    "SampleFile",
    "SamplerResult",
    "data_name",
    "evaluate_samplers",
    "first_below",
    "gather",
    "gather_stats",
    "generate",
    "generate_chunks",
    "image_scorer",
    "is_image_data",
    "rank_share",
    "sample_seeds",
    "sampler_table",
    "scorer_for",
    "write_outputs",
]
