"""What the machine can hold: its memory, and a check that refuses an allocation larger than all
of it before it is tried (an oversized array is refused by the allocator at best, and at worst
reserved lazily and the process killed hours in)."""

from __future__ import annotations

from pathlib import Path

from bellmax.errors import BellmaxError

GIB = 2.0**30


def memory_bytes() -> tuple[int, int] | None:
    """(total, available) memory of this machine, or of its container when that is smaller
    (cgroup v2 memory.max); None where /proc/meminfo does not exist."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        total, available = (int(info[key].split()[0]) * 1024 for key in ("MemTotal", "MemAvailable"))
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max" and int(limit) < total:
            total, available = int(limit), min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return total, available


def check_fits_in_memory(nbytes: int, what: str, fix: str) -> None:
    """Refuse `what` when its `nbytes` exceed this machine's (or container's) whole memory."""
    memory = memory_bytes()
    if memory is not None and nbytes > memory[0]:
        raise BellmaxError(f"{what} would need {nbytes / GIB:,.1f} GiB, more than this machine's "
                           f"{memory[0] / GIB:.1f} GiB of memory: {fix}")
