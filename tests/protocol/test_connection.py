"""Connection file: mode 0600, round trip, refusal of unsafe or incomplete files."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from protocol.connection import ConnectionInfo
from protocol.envelope import PROTO
from protocol.errors import ConnectionFileError, VersionError


def test_new_write_load_round_trip_with_mode_0600(tmp_path) -> None:
    info = ConnectionInfo.new(instance_id="abc")
    assert len({info.shell_port, info.control_port, info.events_port}) == 3
    assert len(info.key) == 64 and info.url("shell") == f"tcp://127.0.0.1:{info.shell_port}"
    path = info.write(tmp_path / "conn" / "backend.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ConnectionInfo.load(path) == info
    data = json.loads(path.read_text())
    assert data["signature_scheme"] == "hkdf-hmac-sha256" and data["transport"] == "tcp"


def test_a_protocol_1_file_is_a_version_mismatch(tmp_path) -> None:
    """A 1.x backend's file (its key signed envelopes directly) names the mismatch."""
    path = tmp_path / "old.json"
    data = {**ConnectionInfo.new().to_dict(), "signature_scheme": "hmac-sha256"}
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    with pytest.raises(VersionError, match=rf"protocol 1\.x backend.*this side speaks {re.escape(PROTO)}"):
        ConnectionInfo.load(path)


def test_unsafe_missing_and_incomplete_files_are_refused(tmp_path) -> None:
    path = ConnectionInfo.new().write(tmp_path / "c.json")
    os.chmod(path, 0o644)
    with pytest.raises(ConnectionFileError, match="chmod 600"):
        ConnectionInfo.load(path)
    assert ConnectionInfo.load(path, check_permissions=False).key
    with pytest.raises(ConnectionFileError, match="does not exist"):
        ConnectionInfo.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"shell_port": 1}')
    os.chmod(bad, 0o600)
    with pytest.raises(ConnectionFileError, match="missing control_port, events_port, key"):
        ConnectionInfo.load(bad)
    bad.write_text('{"shell_port": 0, "control_port": 2, "events_port": 3, "key": "0123456789abcdef0"}')
    with pytest.raises(ConnectionFileError, match="shell_port 0"):
        ConnectionInfo.load(bad)
    bad.write_text("not json")
    with pytest.raises(ConnectionFileError, match="not valid JSON"):
        ConnectionInfo.load(bad)


def test_ipc_endpoints() -> None:
    info = ConnectionInfo.new(ip="/tmp/emo-test", transport="ipc")
    assert info.url("events") == "ipc:///tmp/emo-test-3" and info.is_loopback()


def test_buffer_checksum_follows_the_link() -> None:
    """Buffer bytes get no checksum where the transport guarantees them (loopback, ipc, CURVE) and
    an HMAC on an unencrypted network link; a Client's session uses that scheme."""
    from protocol.client import Client
    from protocol.connection import is_loopback_ip

    assert all(is_loopback_ip(ip) for ip in ("127.0.0.1", "127.3.2.1", "::1", "localhost"))
    assert not any(is_loopback_ip(ip) for ip in ("10.0.0.5", "::", "example.org", ""))
    base = {"shell_port": 1, "control_port": 2, "events_port": 3, "key": "ab" * 32}
    assert ConnectionInfo(**base).buffer_checksum == "none"
    assert ConnectionInfo(**base, ip="/tmp/emo", transport="ipc").buffer_checksum == "none"
    assert ConnectionInfo(**base, ip="10.0.0.5", server_public_key="k" * 40).buffer_checksum == "none"
    insecure = ConnectionInfo(**base, ip="10.0.0.5")
    assert insecure.buffer_checksum == "hmac-sha256"
    client = Client(insecure, timeout=0.1)
    try:
        assert client.session.checksum == "hmac-sha256"
    finally:
        client.close()
