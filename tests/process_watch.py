"""What a service process holds, read from /proc: its sockets, its memory peak, its CPU time.

The hostile-input tests use these to prove what a request did NOT do: open a UDP socket or an
outgoing TCP connection, grow the process past a memory bound, or leave CPU work running.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP state in /proc/net/tcp
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SocketEntry:
    protocol: str  # "udp", "udp6", "tcp", "tcp6"
    local_port: int
    remote_port: int
    state: str


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:  # closed meanwhile
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    return inodes


def sockets(pid: int) -> list[SocketEntry]:
    """The internet sockets the process holds (not its Unix sockets)."""
    inodes = _socket_inodes(pid)
    found = []
    for protocol in ("udp", "udp6", "tcp", "tcp6"):
        table = Path(f"/proc/{pid}/net/{protocol}").read_text().splitlines()[1:]
        for line in table:
            columns = line.split()
            if columns[9] in inodes:
                found.append(SocketEntry(protocol, int(columns[1].rsplit(":", 1)[1], 16),
                                         int(columns[2].rsplit(":", 1)[1], 16), columns[3]))
    return found


def unexpected_sockets(pid: int, own_ports: set[int]) -> list[SocketEntry]:
    """UDP sockets, and TCP sockets that are neither listening nor a connection accepted on one
    of `own_ports`: anything the process opened towards the outside."""
    return [entry for entry in sockets(pid)
            if entry.protocol.startswith("udp")
            or (entry.state != _LISTEN and entry.local_port not in own_ports)]


def _status_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, f"{field} missing from /proc/{pid}/status"
    return int(match.group(1))


def resident_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_resident_bytes(pid: int) -> int:
    """The resident-memory peak since the last reset_peak (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> None:
    """Starts a new VmHWM measurement from the current resident size (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of all the process's threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
