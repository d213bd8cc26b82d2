#!/usr/bin/env python3
"""Writes the hand-made seed corpus of the fuzz targets to tests/fuzz_corpus/<target>/.

The seeds are small, named, valid and near-valid inputs (RFC 6455 section 1.3 handshake,
section 5.7 example frames, fragmented messages, every command form). They are committed, run
by `cargo test --test fuzz_regressions`, and given to libFuzzer as its starting corpus.
Re-running this script rewrites the seed_* files only; found_* files (inputs a fuzz run found) are kept.

Usage: python3 fuzz/make_seeds.py   (from the repository root)
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz_corpus")
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed_" + name), "wb") as f:
        f.write(data)


def request(lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshake_seeds():
    ok = ["GET /chat HTTP/1.1", "Host: server.example.com", "Upgrade: websocket",
          "Connection: Upgrade", "Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Version: 13"]
    write("handshake", "rfc6455_1_3_request", request(ok))
    write("handshake", "request_with_protocol_origin_query", request(
        ["GET /ws?token=abc&x=1 HTTP/1.1", "host: localhost:8080", "upgrade: WebSocket",
         "connection: keep-alive, Upgrade", "sec-websocket-key: " + KEY,
         "sec-websocket-version: 13", "Sec-WebSocket-Protocol: chat, superchat",
         "Origin: http://example.com", "Cookie: a=b", "Authorization: Bearer x.y.z"]))
    write("handshake", "request_http10", request(["GET / HTTP/1.0"] + ok[1:]))
    write("handshake", "request_post", request(["POST / HTTP/1.1"] + ok[1:]))
    write("handshake", "request_version_8", request(ok[:5] + ["Sec-WebSocket-Version: 8"]))
    write("handshake", "request_bad_key", request(ok[:4] + ["Sec-WebSocket-Key: short"] + ok[5:]))
    write("handshake", "request_duplicate_key", request(ok + ["Sec-WebSocket-Key: " + KEY]))
    write("handshake", "request_no_upgrade", request(ok[:2] + ok[3:]))
    write("handshake", "request_plain_get", request(["GET /metrics HTTP/1.1", "Host: x"]))
    write("handshake", "request_partial", request(ok)[:40])
    write("handshake", "request_with_early_frame", request(ok) + bytes.fromhex("818537fa213d7f9f4d5158"))
    write("handshake", "response_101", request(
        ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Accept: " + ACCEPT, "Sec-WebSocket-Protocol: chat"]))
    write("handshake", "response_wrong_accept", request(
        ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA="]))
    write("handshake", "response_extension", request(
        ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Accept: " + ACCEPT, "Sec-WebSocket-Extensions: permessage-deflate"]))
    write("handshake", "response_426", request(
        ["HTTP/1.1 426 Upgrade Required", "Sec-WebSocket-Version: 13", "Content-Length: 0"]))


def frame(first, payload, masked):
    """One frame with first byte `first`; masked with MASK when `masked`."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n <= 0xFFFF:
        head = bytes([first, bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def decoder_input(limit, sizes, stream):
    """[limit][n][sizes][stream], the layout of fuzz/checks.rs DecoderInput."""
    return bytes([limit, len(sizes)]) + bytes(sizes) + stream


def decoder_seeds(target, masked):
    f = lambda first, payload: frame(first, payload, masked)
    close = lambda code, reason: f(0x88, struct.pack(">H", code) + reason)
    streams = {
        "rfc6455_5_7_hello": f(0x81, b"Hello"),
        "rfc6455_5_7_fragmented_hello": f(0x01, b"Hel") + f(0x80, b"lo"),
        "rfc6455_5_7_ping_pong": f(0x89, b"Hello") + f(0x8A, b"Hello"),
        "rfc6455_5_7_binary_256": f(0x82, bytes(range(256))),
        "fragments_with_ping": f(0x02, b"ab") + f(0x89, b"") + f(0x00, b"cd") + f(0x80, b"ef"),
        "utf8_split_across_fragments": f(0x01, "h\u00e9".encode()[:2]) + f(0x80, "\u00e9llo".encode()[1:]),
        "invalid_utf8": f(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
        "close_1000_reason": close(1000, b"bye"),
        "close_empty": f(0x88, b""),
        "close_one_byte": f(0x88, b"\x03"),
        "close_1005_invalid": close(1005, b""),
        "close_bad_reason_utf8": close(1000, b"\xff"),
        "reserved_bits": f(0xC1, b"x"),
        "reserved_opcode": f(0x83, b"x"),
        "fragmented_ping": f(0x09, b"x"),
        "ping_126": f(0x89, b"p" * 126),
        "continuation_without_start": f(0x80, b"x"),
        "data_inside_fragmented": f(0x01, b"a") + f(0x81, b"b"),
        "len64_msb_set": bytes([0x82, (0x80 if masked else 0) | 127, 0x80, 0, 0, 0, 0, 0, 0, 1]),
        "huge_declared_length": bytes([0x82, (0x80 if masked else 0) | 127, 0, 0, 0, 1, 0, 0, 0, 0]),
        "endless_fragments": b"".join(f(0x02 if i == 0 else 0x00, b"0123456789") for i in range(40)),
        "wrong_masking": frame(0x81, b"Hello", not masked),
        "empty_text_and_binary": f(0x81, b"") + f(0x82, b""),
    }
    for name, stream in streams.items():
        write(target, name + "_whole", decoder_input(0, [], stream))
        write(target, name + "_split", decoder_input(200, [1, 3, 0, 7], stream))


def command_json_seeds():
    seeds = {
        "subscribe": '{"type":"subscribe","channel":"md.BTC-USD"}',
        "subscribe_since_epoch": '{"type":"subscribe","channel":"room.42","since":17,"epoch":"e1-0"}',
        "unsubscribe": '{"type":"unsubscribe","channel":"a:b_c-d.e"}',
        "publish_object": '{"type":"message","channel":"md.BTC-USD","content":{"px":101.5,"q":[1,2,{"a":null}]}}',
        "publish_string_escapes": '{"channel":"c","content": "\\u00e9\\n\\"q\\"\\ud83d\\ude00" ,"type":"message"}',
        "publish_huge_number": '{"type":"message","channel":"c","content":-1.5e999999}',
        "publish_null_key": '{"type":"message","channel":"c","content":null,"key":"k1"}',
        "publish_nested": '{"type":"message","channel":"c","content":[[[[[[[[[[[]]]]]]]]]]]}',
        "publish_whitespace": ' \t\n{ "type" : "message" , "channel" : "c" , "content" : \r\n true \n } ',
        "publish_unicode_content": '{"type":"message","channel":"c","content":"\u4e2d\u6587 \U0001F600"}',
        "ping": '{"type":"ping"}',
        "auth": '{"type":"auth","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig"}',
        "duplicate_field": '{"type":"ping","type":"ping"}',
        "not_object": '[1,2,3]',
        "invalid_json": '{"type":"message",',
        "bad_channel": '{"type":"subscribe","channel":"has space"}',
        "unknown_type": '{"type":"dance"}',
        "missing_content": '{"type":"message","channel":"c"}',
        "since_negative": '{"type":"subscribe","channel":"c","since":-1}',
    }
    for name, text in seeds.items():
        write("command_json", name, text.encode())
    write("command_json", "invalid_utf8", b'{"type":"message","channel":"c","content":"\xff"}')


def command_binary_seeds():
    write("command_binary", "publish", b"\x01\x0amd.BTC-USD" + bytes(range(32)))
    write("command_binary", "publish_empty_payload", b"\x01\x01c")
    write("command_binary", "empty", b"")
    write("command_binary", "unknown_op", b"\x02\x01c")
    write("command_binary", "truncated", b"\x01\x09short")
    write("command_binary", "bad_channel", b"\x01\x03a b")
    write("command_binary", "zero_length_channel", b"\x01\x00payload")


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(ver_cmd, fam, payload):
    return V2_SIG + bytes([ver_cmd, fam]) + struct.pack(">H", len(payload)) + payload


def proxy_header_seeds():
    req = request(["GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
                   "Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Version: 13"])
    tcp4 = bytes([192, 0, 2, 10, 10, 0, 0, 5]) + struct.pack(">HH", 54321, 443)
    tcp6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 40000, 8080)
    write("proxy_header", "v1_tcp4_then_request", b"PROXY TCP4 192.0.2.10 10.0.0.5 54321 443\r\n" + req)
    write("proxy_header", "v1_tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8080\r\n")
    write("proxy_header", "v1_unknown", b"PROXY UNKNOWN\r\n")
    write("proxy_header", "v1_unknown_longest", b"PROXY UNKNOWN " + b"f" * 90 + b"\r\n")
    write("proxy_header", "v1_bare_lf", b"PROXY TCP4 192.0.2.10 10.0.0.5 1 2\n")
    write("proxy_header", "v1_bad_port", b"PROXY TCP4 192.0.2.10 10.0.0.5 080 2\r\n")
    write("proxy_header", "v2_tcp4_then_request", v2(0x21, 0x11, tcp4) + req)
    write("proxy_header", "v2_tcp6", v2(0x21, 0x21, tcp6))
    write("proxy_header", "v2_local", v2(0x20, 0x00, b""))
    write("proxy_header", "v2_unix", v2(0x21, 0x31, bytes(216)))
    write("proxy_header", "v2_tlv", v2(0x21, 0x11, tcp4 + b"\x04\x00\x03abc\xea\x00\x02vp"))
    write("proxy_header", "v2_bad_version", v2(0x11, 0x11, tcp4))
    write("proxy_header", "v2_short_length", v2(0x21, 0x21, tcp4))
    write("proxy_header", "missing", req)


def session_seeds():
    """`session`: operations [op][arg][arg bytes], see fuzz/session_checks.rs."""
    def masked(first, payload):
        body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
        return bytes([first, 0x80 | len(payload)]) + MASK + body

    def client(frame):
        return bytes([1, len(frame)]) + frame

    upgrade, write_all = b"\x00\x00", b"\x04\xff"
    close_1000 = masked(0x88, struct.pack(">H", 1000))
    write("session", "handshake_timeout", b"\x02\x3c")
    write("session", "heartbeat_then_terminate", upgrade + b"\x02\x64" + write_all + b"\x02\x1e")
    write("session", "heartbeat_answered", upgrade + b"\x02\x64" + client(masked(0x8a, b"")) + b"\x02\x64")
    write("session", "echo_then_close", upgrade + client(masked(0x81, b"hi")) + write_all
          + client(close_1000) + write_all + b"\x02\x1e")
    write("session", "pings_in_one_read", upgrade + client(masked(0x89, b"a") * 8) + b"\x04\x01" + write_all)
    write("session", "reserved_bit", upgrade + client(masked(0x81, b"ok") + masked(0xc1, b"x")) + write_all)
    write("session", "drain", upgrade + b"\x03\x05hello\x07\x05\x02\x0a" + write_all + b"\x02\x1e")
    write("session", "auth_deadline", upgrade + b"\x08\x05\x02\x0a" + write_all + b"\x02\x1e")
    write("session", "close_then_eof", upgrade + b"\x06\x00" + write_all + b"\x05\x00")
    write("session", "idle", upgrade + client(masked(0x81, b"x")) + (b"\x02\x50" + client(masked(0x8a, b""))) * 6)


if __name__ == "__main__":
    handshake_seeds()
    decoder_seeds("decoder_server", masked=True)
    decoder_seeds("decoder_client", masked=False)
    command_json_seeds()
    command_binary_seeds()
    proxy_header_seeds()
    session_seeds()
