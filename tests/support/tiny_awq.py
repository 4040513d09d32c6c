"""Quantize the tiny model to a 4-bit AWQ checkpoint that the vLLM CPU build serves (no downloads).

Run with the vLLM venv's python: `python tests/support/tiny_awq.py SRC_DIR OUT_DIR` (SRC_DIR:
the tiny model of `tiny_model.py`). Every linear layer of the decoder (q/k/v/o, gate/up/down)
is quantized round-to-nearest, asymmetric, in groups of 128 input channels, and stored the way
AutoAWQ's GEMM format stores it, which vLLM reads with `quant_method: awq`:

    qweight [in, out / 8] int32: 8 4-bit values per int32 along the output dimension, in
                                 AWQ's interleaved order (0, 2, 4, 6, 1, 3, 5, 7)
    qzeros  [in / 128, out / 8] int32, packed the same way
    scales  [in / 128, out]     float16
    W^T[i, o] = (q[i, o] - zero[i // 128, o]) * scale[i // 128, o]

Embeddings, norms and the LM head stay BF16 (AutoAWQ's default). On CPU vLLM serves it with
its WNA16 kernel (every dimension here is a multiple of 32). About 5 s. This is a real 4-bit
quantization of the same random-weight model, not a calibrated AWQ (no activation-aware
scaling): its outputs are as meaningless as the original's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the vLLM venv has torch; the tests' venv just type-checks this file
    import torch

GROUP = 128
BITS = 4
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "generation_config.json", "special_tokens_map.json")  # fmt: skip


def _pack(values: torch.Tensor) -> torch.Tensor:
    """[rows, cols] ints in 0..15 -> [rows, cols / 8] int32, AWQ's column order."""
    import torch

    rows, cols = values.shape
    grouped = values.to(torch.int64).reshape(rows, cols // 8, 8)
    packed = torch.zeros(rows, cols // 8, dtype=torch.int64)
    for slot, column in enumerate(AWQ_ORDER):
        packed |= grouped[:, :, column] << (BITS * slot)
    packed[packed >= 2**31] -= 2**32  # the same bits as a signed int32
    return packed.to(torch.int32)


def quantize(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """A linear layer's [out, in] weight -> its AWQ qweight, qzeros and scales."""
    import torch

    transposed = weight.to(torch.float32).t().contiguous()  # [in, out]
    inputs, outputs = transposed.shape
    groups = transposed.reshape(inputs // GROUP, GROUP, outputs)
    low, high = groups.amin(dim=1), groups.amax(dim=1)  # [in / 128, out]
    scales = ((high - low) / (2**BITS - 1)).clamp(min=1e-8)
    zeros = torch.round(-low / scales).clamp(0, 2**BITS - 1)
    q = torch.round(groups / scales[:, None, :] + zeros[:, None, :]).clamp(0, 2**BITS - 1)
    return {
        "qweight": _pack(q.reshape(inputs, outputs)),
        "qzeros": _pack(zeros),
        "scales": scales.to(torch.float16),
    }


def main(src_dir: Path, out_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(src_dir / "model.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        base, _, kind = name.rpartition(".")
        if kind == "weight" and base.rpartition(".")[2] in QUANTIZED:
            for part, value in quantize(tensor).items():
                out[f"{base}.{part}"] = value
        else:
            out[name] = tensor
    config = json.loads((src_dir / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "awq", "bits": BITS, "group_size": GROUP, "zero_point": True,
        "version": "gemm", "modules_to_not_convert": None,
    }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        if (src_dir / name).exists():
            shutil.copy(src_dir / name, out_dir / name)
    print(f"tiny AWQ model written to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tiny_awq.py SRC_DIR OUT_DIR")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
