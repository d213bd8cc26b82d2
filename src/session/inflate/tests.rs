//! Inflating compressed messages: which context reads them and each failure's close code.

use super::*;
use crate::proto::deflate::Deflater;
use crate::session::tests::upgraded;

fn open() -> Session {
    let mut s = upgraded(1 << 16, 1 << 12);
    s.allow_compressed();
    s
}

fn compressed(deflater: &mut Deflater, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    deflater.compress(message, 15, &mut out);
    out
}

#[test]
fn without_context_takeover_the_loops_inflater_is_reset_for_each_message() {
    let s = open();
    let mut tools = LoopInflate::default();
    // The client compresses each message on its own (no takeover).
    let mut client = Deflater::new(false);
    let hello = compressed(&mut client, b"hello hello");
    for _ in 0..2 {
        let message = s.inflate(OpCode::Text, &hello, None, &mut tools, 100);
        assert_eq!(message, Ok(&b"hello hello"[..]));
        tools.recycle();
    }
}

#[test]
fn with_context_takeover_the_connections_own_inflater_keeps_the_dictionary() {
    let s = open();
    let mut tools = LoopInflate::default();
    let mut own = Inflater::new();
    let mut client = Deflater::new(true);
    let first = compressed(&mut client, b"the same words again");
    let second = compressed(&mut client, b"the same words again");
    let read = s.inflate(OpCode::Binary, &first, Some(&mut own), &mut tools, 100);
    assert_eq!(read, Ok(&b"the same words again"[..]));
    let read = s.inflate(OpCode::Binary, &second, Some(&mut own), &mut tools, 100);
    assert_eq!(read, Ok(&b"the same words again"[..]));
    // The shared context, reset, cannot read a message that refers to the previous one.
    let shared = s.inflate(OpCode::Binary, &second, None, &mut tools, 100);
    assert_ne!(shared, Ok(&b"the same words again"[..]));
}

#[test]
fn failures_map_to_1009_and_1007() {
    let s = open();
    let mut tools = LoopInflate::default();
    let mut client = Deflater::new(false);
    let big = compressed(&mut client, &[b'a'; 101]);
    let too_big = s.inflate(OpCode::Binary, &big, None, &mut tools, 100);
    assert_eq!(too_big, Err(InflateFailure::TooBig));
    assert_eq!(InflateFailure::TooBig.error().close_code(), 1009);
    let exact = s.inflate(OpCode::Binary, &big, None, &mut tools, 101);
    assert_eq!(exact.map(<[u8]>::len), Ok(101));
    let bad = s.inflate(OpCode::Binary, &[0xff, 0xff, 0xff], None, &mut tools, 100);
    assert_eq!(bad, Err(InflateFailure::BadData));
    assert_eq!(InflateFailure::BadData.error().close_code(), 1007);
    let latin1 = compressed(&mut client, b"caf\xe9");
    let text = s.inflate(OpCode::Text, &latin1, None, &mut tools, 100);
    assert_eq!(text, Err(InflateFailure::BadText));
    assert_eq!(InflateFailure::BadText.error().close_code(), 1007);
    let binary = s.inflate(OpCode::Binary, &latin1, None, &mut tools, 100);
    assert_eq!(binary, Ok(&b"caf\xe9"[..]), "binary is not checked");
}

#[test]
fn a_large_message_buffer_is_freed_once_handled() {
    let s = open();
    let mut tools = LoopInflate::default();
    let mut client = Deflater::new(false);
    let large = compressed(&mut client, &vec![b'x'; 100_000]);
    let read = s.inflate(OpCode::Binary, &large, None, &mut tools, 1 << 20);
    assert_eq!(read.map(<[u8]>::len), Ok(100_000));
    tools.recycle();
    assert_eq!(tools.out.capacity(), 0);
}
