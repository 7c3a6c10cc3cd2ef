"""The FID / KID floor of an image preset: its held-out images scored against the training images, as a
trained model's samples are (same extractor, reference, cache and KID settings), into a JSON file the
equal-compute report reads (`fid_floor.json` beside calibration.json).

    python -m experiments.image_floor --out experiments/results/equal_compute/digits/fid_floor.json \
        eval.fid.weights_path=/path/to/pt_inception-2015-12-05-6726825d.pth

A model that samples the data law scores about this, not 0. FID is biased upward at small sample counts,
so a floor from the held-out set's size (297 digits) sits above what 1000 samples of the data law would
score; KID is unbiased, so its floor compares across sample counts.
"""

import argparse
import json
from pathlib import Path

from experiments.equal_compute import compose_run


def floor(preset: str, overrides: list[str]) -> dict:
    from hydra.utils import instantiate

    from ctdm.build import build_data
    from ctdm.evaluation.scorers import image_scorer

    cfg = compose_run(preset, overrides)
    data = build_data(cfg)
    data.setup("fit")
    fid = cfg.eval.fid
    scorer = image_scorer(
        data,
        instantiate(fid.extractor)(),
        cache_dir=fid.cache_dir,
        real_count=fid.real_count,
        kid_subset_size=fid.kid_subset_size,
        kid_subsets=fid.kid_subsets,
        kid_max_samples=fid.kid_max_samples,
    )
    scorer.update(data.x_val)
    return {
        "preset": preset,
        "overrides": overrides,
        "reference": "train",
        "scored": "held-out",
        **scorer.compute(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--out", type=Path, required=True)
    args, overrides = parser.parse_known_args(argv)
    result = floor(args.preset, overrides)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
