"""Peak memory of a block of code, on the device it runs on (docs/method.md §7).

    with PeakMemory(device) as peak:
        learner.step(batch)
    peak.gib  # CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak resident set (VmHWM)

On CUDA the peak is what PyTorch allocated on the device during the block, everything resident
included (weights, optimizer state, another model in the same process). On the CPU it is the
process's peak resident set size during the block: Linux lets a process reset that high-water
mark (``/proc/self/clear_refs``); where it cannot, the peak since the process started is
reported and ``reset`` says so.
"""

from __future__ import annotations

from pathlib import Path

import torch

GIB = 2**30


def rss_peak_bytes() -> int:
    """The process's peak resident set size (VmHWM) since it started or since the last reset;
    without /proc (macOS), ``getrusage``'s peak since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def reset_rss_peak() -> bool:
    """Reset VmHWM to the current resident set; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Context manager that measures the peak memory of its block on ``device``."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.bytes = 0
        self.reset = True

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.reset = reset_rss_peak()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.bytes = rss_peak_bytes()

    @property
    def gib(self) -> float:
        return self.bytes / GIB

    @property
    def kind(self) -> str:
        """What was measured, in words."""
        if self.device.type == "cuda":
            return "CUDA max_memory_allocated"
        return "peak RSS" if self.reset else "peak RSS since the process started"
