"""What a process holds, read from Linux's /proc (psutil is not a dependency): for resource
tests that assert a server's memory and threads stay within bounds under attack.

    reset_peak(pid)
    before = proc_status(pid)
    ...                                   # the attack
    after = proc_status(pid)
    growth_kb = after["VmHWM"] - before["VmRSS"]
"""

from __future__ import annotations

FIELDS = ("VmRSS", "VmHWM", "Threads")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB, and Threads, of a live process."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in FIELDS:
                found[name] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> None:
    """Start VmHWM afresh from the current RSS (Linux: 5 into clear_refs), so the peak that
    follows is the test's, not start-up's."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
