"""Malformed frames close only their own connection, with a log line; SASL is refused."""

import socket
import struct
import time

from confluent_kafka.admin import AdminClient

from kafkalib import wait_for


def connect(bootstrap):
    host, port = bootstrap.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed(sock):
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_malformed_frames_close_the_connection_and_are_logged(kafka):
    healthy = AdminClient({"bootstrap.servers": kafka.bootstrap})
    assert healthy.list_topics(timeout=10).brokers
    frames = [
        struct.pack(">i", 200 * 1024 * 1024),  # larger than the frame limit
        struct.pack(">i", -5),  # negative length
        struct.pack(">ihhih", 10, 12345, 0, 1, -1),  # unknown API key
        struct.pack(">ihhih", 10, 3, 99, 1, -1),  # Metadata v99
        struct.pack(">ihhi", 100, 3, 9, 1) + b"\x00",  # truncated: promises 100 bytes, sends 9
    ]
    for frame in frames:
        s = connect(kafka.bootstrap)
        s.sendall(frame)
        if frame.startswith(struct.pack(">i", 100)):
            s.shutdown(socket.SHUT_WR)
        assert closed(s)
        s.close()
    wait_for(
        lambda: sum("closing kafka connection" in line for line in kafka.log_lines) >= len(frames),
        timeout=10,
        what="a log line per malformed connection",
    )
    # Other clients are unaffected.
    assert healthy.list_topics(timeout=10).brokers


def test_sasl_handshake_is_refused(kafka):
    s = connect(kafka.bootstrap)
    mechanism = b"PLAIN"
    body = struct.pack(">hhih", 17, 1, 42, -1) + struct.pack(">h", len(mechanism)) + mechanism
    s.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", s.recv(4))[0]
    data = b""
    while len(data) < size:
        data += s.recv(size - len(data))
    correlation, error = struct.unpack(">ih", data[:6])
    assert correlation == 42
    assert error == 33  # UNSUPPORTED_SASL_MECHANISM
    s.close()
