"""How a run computes on its device: autocast dtype, loss scaling, memory format, compilation.

``auto`` is what keeps a GPU busiest while staying safe: bf16 autocast with channels_last where the GPU has bf16
(Ampere and later), fp16 autocast with a GradScaler on older GPUs, plain fp32 on the CPU; and on CUDA torch.compile
with CUDA graphs (``mode="reduce-overhead"``), which the fixed-shape loss (detection/loss.py) makes possible.
``fastest`` is ``auto`` on a GPU; on a CPU it trades fp32's exact arithmetic for speed: bf16 autocast where the CPU
computes bf16 natively (AVX512-BF16 or AMX), fp32 elsewhere, and channels_last either way (oneDNN's own layout:
on an AVX2 CPU, 2026-12-08, SSD300 at width 0.125 runs forward + backward 18% faster in it, a whole training
iteration with its loss and loader about 6% faster).

``compile``: ``auto`` (CUDA graphs on CUDA, eager on the CPU), ``true`` (compiled, no CUDA graphs), ``false``
(eager).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16", "fp16" or "fp32"
    autocast_dtype: torch.dtype | None  # None: no autocast
    scale_loss: bool  # fp16 needs a GradScaler; bf16 has fp32's range
    channels_last: bool
    compile: bool
    compile_mode: str | None = None  # torch.compile's mode: "reduce-overhead" captures CUDA graphs; None: default

    def compiled(self, fn):
        """``fn`` (a module or a function) compiled as these settings say, or ``fn`` itself when eager."""
        return torch.compile(fn, mode=self.compile_mode) if self.compile else fn

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> str:
        graphs = ", CUDA graphs" if self.compile_mode == "reduce-overhead" else ""
        return f"precision {self.name}, channels_last {self.channels_last}, compiled {self.compile}{graphs}"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); torch reports only whether oneDNN can run bf16
    at all, emulated on any AVX-512 CPU (slower than fp32 there), hence the flags read here (Linux; False elsewhere)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(precision: str, compile: str, device: torch.device) -> Precision:
    """The concrete settings for a device from the config's ``precision`` and ``compile`` (each may be 'auto')."""
    cuda = device.type == "cuda"
    if precision == "fastest" and not cuda:
        name = "bf16" if cpu_has_native_bf16() else "fp32"
        compiled = compile == "true"
        return Precision(name, torch.bfloat16 if name == "bf16" else None, False, channels_last=True, compile=compiled)
    if precision in ("auto", "fastest"):
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ValueError("precision fp16 needs a CUDA device (the CPU has no fp16 loss scaling); use bf16 or fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    compiled = cuda if compile == "auto" else compile == "true"
    mode = "reduce-overhead" if cuda and compile == "auto" else None
    return Precision(
        precision, dtype, precision == "fp16", channels_last=precision == "bf16", compile=compiled, compile_mode=mode
    )


def configure_device(device: torch.device) -> None:
    """fp32 matrix products on TF32 tensor cores (what "fp32" means on a GPU here); no effect on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


__all__ = ["Precision", "configure_device", "cpu_has_native_bf16", "resolve"]
