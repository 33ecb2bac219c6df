"""Loopback ports held for a task's processes until the task ends, never handed out twice meanwhile."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from local import ports
from local.ports import NoFreePort, reserve_port


def test_ports_held_at_once_are_all_different_and_below_the_ephemeral_range(tmp_path: Path) -> None:
    held = [reserve_port(tmp_path) for _ in range(50)]
    try:
        assert len({r.port for r in held}) == 50
        assert all(20000 <= r.port < 32000 for r in held)
    finally:
        for reservation in held:
            reservation.release()


def test_a_port_another_process_holds_or_listens_on_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one candidate port reserved by another process, one with a listener, and a free one
    held_elsewhere, listened_on, free = 20001, 20002, 20003
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from local.ports import reserve_port;"
            f"import local.ports as p; p.random.sample = lambda r, k: [{held_elsewhere}];"
            f"r = reserve_port(Path(sys.argv[1])); print(r.port, flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    listener = socket.socket()
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == str(held_elsewhere)
        listener.bind(("127.0.0.1", listened_on))
        listener.listen()
        monkeypatch.setattr(ports.random, "sample", lambda r, k: [held_elsewhere, listened_on, free])

        # When a port is reserved here
        reservation = reserve_port(tmp_path)

        # Then it is the free one
        assert reservation.port == free
        reservation.release()
    finally:
        listener.close()
        holder.communicate("")


def test_a_released_port_can_be_reserved_again_and_none_left_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ports.random, "sample", lambda r, k: [20004])
    first = reserve_port(tmp_path)
    with pytest.raises(NoFreePort, match="no free loopback port"):
        reserve_port(tmp_path)
    first.release()
    first.release()  # twice is harmless
    again = reserve_port(tmp_path)
    assert again.port == 20004
    again.release()
