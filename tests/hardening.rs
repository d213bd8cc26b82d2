//! Strict RFC 6455 fail-fast and coherent limits, seen from a raw client on `/echo` and `/`:
//! what frames before a bad one earned is written before the close; every ping gets its own
//! pong; a ping flood closes 1008; a message of the largest accepted size is delivered.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{masked_frame, Client, Raw};
use serde_json::{json, Value};
use wsrelay::{Config, ServerHandle};

fn echo_relay() -> ServerHandle {
    common::start(Config {
        echo_enabled: true,
        message_bytes_max: 4096,
        ..Config::loopback_for_tests(1)
    })
}

/// Sends `bytes` in one write to `/echo`; returns the frames up to and including the close.
fn frames_until_close(bytes: &[u8]) -> Vec<common::Frame> {
    let server = echo_relay();
    let mut c = Raw::upgraded(server.local_addr(), "/echo");
    c.send(bytes);
    let mut frames = Vec::new();
    loop {
        let f = c.read_frame();
        let close = f.opcode == 8;
        frames.push(f);
        if close {
            assert!(c.reads_eof(), "TCP closes after the close frame");
            return frames;
        }
    }
}

fn text(payload: &[u8]) -> common::Frame {
    common::Frame {
        fin: true,
        opcode: 1,
        payload: payload.to_vec(),
    }
}

fn assert_answered_then_closed(bytes: Vec<u8>, answers: &[common::Frame], code: u16) {
    let frames = frames_until_close(&bytes);
    let (close, before) = frames.split_last().expect("a close frame");
    assert_eq!(before, answers, "what the valid frames earned, in order");
    assert_eq!(close.close_code(), Some(code));
}

#[test]
fn a_message_before_reserved_bits_is_echoed_before_the_1002() {
    let mut bytes = masked_frame(0x81, b"first");
    bytes.extend(masked_frame(0x81 | 0x40, b"rsv1"));
    assert_answered_then_closed(bytes, &[text(b"first")], 1002);
}

#[test]
fn a_message_before_a_reserved_opcode_is_echoed_before_the_1002() {
    let mut bytes = masked_frame(0x81, b"first");
    bytes.extend(masked_frame(0x83, b"op3"));
    assert_answered_then_closed(bytes, &[text(b"first")], 1002);
}

#[test]
fn a_fragmented_message_interrupted_by_a_reserved_opcode_keeps_earlier_answers() {
    let mut bytes = masked_frame(0x81, b"whole");
    bytes.extend(masked_frame(0x89, b"p")); // ping
    bytes.extend(masked_frame(0x01, b"frag")); // a fragmented message starts...
    bytes.extend(masked_frame(0x8b, b"")); // ...and a reserved control opcode breaks it
    let pong = common::Frame {
        fin: true,
        opcode: 0xA,
        payload: b"p".to_vec(),
    };
    // The pong is a control frame: it overtakes queued data (outbox lanes, RFC 6455 §5.4
    // allows control frames between data frames), so it is written before the echo.
    assert_answered_then_closed(bytes, &[pong, text(b"whole")], 1002);
}

#[test]
fn a_continuation_with_nothing_to_continue_follows_the_earlier_echo() {
    let mut bytes = masked_frame(0x82, b"\x00\x01");
    bytes.extend(masked_frame(0x80, b"orphan"));
    let binary = common::Frame {
        fin: true,
        opcode: 2,
        payload: vec![0, 1],
    };
    assert_answered_then_closed(bytes, &[binary], 1002);
}

#[test]
fn ten_pings_in_one_write_get_ten_pongs_in_order() {
    let server = echo_relay();
    let mut c = Raw::upgraded(server.local_addr(), "/echo");
    let mut bytes = Vec::new();
    for i in 0..10u8 {
        bytes.extend(masked_frame(0x89, &[b'p', b'0' + i]));
    }
    c.send(&bytes);
    for i in 0..10u8 {
        let f = c.read_frame();
        assert_eq!(
            (f.opcode, f.payload),
            (0xA, vec![b'p', b'0' + i]),
            "pong {i}"
        );
    }
    // Still open: an echo comes back after the pongs.
    c.send(&masked_frame(0x81, b"after"));
    assert_eq!(c.read_frame(), text(b"after"));
}

#[test]
fn pings_beyond_the_control_budget_close_1008_after_the_pongs_that_fit() {
    let server = common::start(Config {
        echo_enabled: true,
        control_bytes_max: 1024,
        message_bytes_max: 4096,
        ..Config::loopback_for_tests(1)
    });
    // A client that reads nothing (a tiny receive window) while it pings: once the socket is
    // full, its pongs pile up in the outbox. (A client that reads is never closed: a full
    // control budget is written out first.)
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.local_addr().into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let mut c = Raw::from_stream(stream.try_clone().unwrap());
    c.send(common::upgrade_request("/echo").as_bytes());
    assert!(c.read_head().starts_with("HTTP/1.1 101"));
    let ping = masked_frame(0x89, &[b'x'; 125]);
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // 8 MB of pings at most; the relay closes long before (writes then fail or block).
        for _ in 0..64 {
            if stream.write_all(&ping.repeat(1000)).is_err() {
                break;
            }
        }
    });
    // Nothing is read until every ping is sent: the pongs can only pile up.
    writer.join().expect("writer");
    let mut pongs = 0u64;
    let code = loop {
        let f = c.read_frame();
        match f.opcode {
            0xA => {
                assert_eq!(f.payload, vec![b'x'; 125]);
                pongs += 1;
            }
            8 => break f.close_code(),
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert_eq!(code, Some(1008), "a ping flood is a policy violation");
    assert!(
        pongs < 64_000,
        "the relay stopped answering ({pongs} pongs)"
    );
}

#[test]
fn a_publish_of_the_largest_accepted_size_reaches_a_subscriber_with_the_smallest_outbox() {
    let config = Config {
        message_bytes_max: 2 << 20,
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(Config {
        outbox_bytes_max: config.outbox_bytes_needed(),
        ..config
    });
    let addr = server.local_addr();
    let mut sub = Client::connect(addr);
    sub.subscribe("big");
    let mut publisher = Client::connect(addr);
    let envelope = json!({"type": "message", "channel": "big", "content": ""}).to_string();
    let content = "x".repeat((2 << 20) - envelope.len());
    publisher.publish("big", Value::String(content.clone()));
    let got = sub.recv();
    assert_eq!(
        (got["type"].as_str(), got["seq"].as_u64()),
        (Some("message"), Some(1))
    );
    assert_eq!(got["content"].as_str().map(str::len), Some(content.len()));
}

/// At the smallest outbox validation allows (one largest message + 4 KiB), two echoes of the
/// largest message sent in one write are both echoed: the second does not fit beside the
/// first, so the relay writes the first out (the client reads) before queueing it, as it does
/// for pongs. Before, it closed the connection 4100 although the client read everything.
#[test]
fn two_largest_echoes_in_one_write_are_both_echoed_at_the_smallest_outbox() {
    const LARGEST: usize = 16 * 1024;
    let config = Config {
        echo_enabled: true,
        message_bytes_max: LARGEST,
        ..Config::loopback_for_tests(1)
    };
    let server = common::start(Config {
        outbox_bytes_max: config.outbox_bytes_needed(),
        ..config
    });
    let mut raw = Raw::upgraded(server.local_addr(), "/echo");
    let payloads = [vec![b'a'; LARGEST], vec![b'b'; LARGEST]];
    let both = [
        masked_frame(0x82, &payloads[0]),
        masked_frame(0x82, &payloads[1]),
    ]
    .concat();
    raw.send(&both);
    for payload in &payloads {
        let f = raw.read_frame();
        assert_eq!(
            (f.opcode, f.payload.len()),
            (2, LARGEST),
            "an echo, not a close"
        );
        assert_eq!(&f.payload, payload);
    }
}

#[test]
fn an_outbox_that_cannot_hold_one_message_is_refused_at_start_with_status_2() {
    let (code, stderr) = run_to_exit(&["--max-message-size", "67108864"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-queued-bytes to at least 67112960"),
        "{stderr}"
    );
    let server_start = wsrelay::Server::start(Config {
        message_bytes_max: 64 << 20,
        ..Config::loopback_for_tests(1)
    });
    assert!(server_start.is_err(), "the library refuses it too");
}

#[test]
fn durations_that_could_overflow_are_refused_at_start() {
    let (code, stderr) = run_to_exit(&["--heartbeat-interval", "18446744073709551615"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("heartbeat-interval must be at most 30 days"),
        "{stderr}"
    );
}

/// Runs the binary on a free loopback port with `args`; returns its exit code and stderr. A
/// relay that starts instead of refusing is stopped (by its PID) after 10 s: `None`.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut code = None;
    for _ in 0..1000 {
        if let Some(status) = child.try_wait().expect("wait") {
            code = Some(status.code());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (code.flatten(), stderr)
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--threads", "1"])
        .env("RUST_LOG", "info")
        // NO_COLOR would turn colour off by itself: the pipe alone must do it.
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let read = stderr.read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.is_ok_and(|n| n > 0), "no log line");
    assert!(line.contains("listening on ws://127.0.0.1:"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "ANSI escape codes in a log that is not a terminal: {line:?}"
    );
}
