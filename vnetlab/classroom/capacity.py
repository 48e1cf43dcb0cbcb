"""How many seats this host's memory holds: guests × measured memory per guest, against MemAvailable.

The figure per guest is measured, not configured (docs/benchmark.md, "Memory"): a 128 MiB tiny
guest's qemu has a Pss of ~156 MiB in a ten-guest lab (its guest RAM as the guest touches it,
qemu's 32 MiB translation cache, its heap and its share of the kernel and initramfs it maps). A
guest given more RAM may touch all of it, so it counts 156 MiB plus what it has beyond 128 MiB.
A reserve stays for the host: the web server, libvirtd and the checks' captures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MEASURED_PSS_MIB = 156  # per 128 MiB tiny guest, docs/benchmark.md (ten guests; 150 with thirty)
MEASURED_GUEST_RAM_MIB = 128
HOST_RESERVE_MIB = 1024
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Capacity:
    seats: int
    guests_per_seat: int
    mib_per_seat: int
    available_mib: int
    reserve_mib: int = HOST_RESERVE_MIB

    @property
    def needed_mib(self) -> int:
        return self.seats * self.mib_per_seat

    @property
    def fits(self) -> bool:
        return self.needed_mib <= self.available_mib - self.reserve_mib

    @property
    def most_seats(self) -> int:
        return max(0, (self.available_mib - self.reserve_mib) // self.mib_per_seat) if self.mib_per_seat else 0

    def arithmetic(self) -> str:
        return (
            f"{self.seats} seat(s) × {self.guests_per_seat} guest(s) a seat × {self.mib_per_seat // max(1, self.guests_per_seat)} MiB measured per guest "
            f"= {self.needed_mib} MiB, against MemAvailable {self.available_mib} MiB less {self.reserve_mib} MiB kept for the host "
            f"= {self.available_mib - self.reserve_mib} MiB"
        )

    def refusal(self) -> str:
        return (
            f"not enough memory for {self.seats} seat(s): {self.arithmetic()}. This host holds at most {self.most_seats} seat(s) of this "
            f"exercise; start fewer (--seats or a shorter roster), free memory, or see docs/classroom.md (resources per seat)"
        )


def guest_mib(memory_mib: int) -> int:
    """What one guest takes, measured: the tiny guest's Pss, plus any RAM it has beyond the measured guest's."""
    return MEASURED_PSS_MIB + max(0, memory_mib - MEASURED_GUEST_RAM_MIB)


def mem_available_mib(meminfo: Path = MEMINFO) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"{meminfo} has no MemAvailable line")


def capacity(seats: int, guest_memory_mib: list[int], available_mib: int | None = None) -> Capacity:
    """`guest_memory_mib`: the configured RAM of each guest of one seat (VMs and switch guests)."""
    per_seat = sum(guest_mib(m) for m in guest_memory_mib)
    return Capacity(seats, len(guest_memory_mib), per_seat, mem_available_mib() if available_mib is None else available_mib)
