//! Test helpers: the server side of a scripted exchange, built from the relay's own
//! server-side codec, shared by the connection and session tests.

use crate::proto::close::encode_close_payload;
use crate::proto::frame::{encode_server_frame, OpCode};
use crate::proto::handshake::{
    accept_key, encode_switching_protocols, parse_request_head, validate_upgrade,
};
use crate::proto::Decode;

/// The 101 answer to a client's upgrade request (validated by the relay's own rules).
pub(crate) fn answer_101(request: &[u8]) -> Vec<u8> {
    let Ok(Decode::Complete(head, _)) = parse_request_head(request) else {
        panic!("incomplete request");
    };
    let upgrade = validate_upgrade(&head).expect("a valid upgrade request");
    let mut out = Vec::new();
    encode_switching_protocols(&mut out, &accept_key(upgrade.key), None, None);
    out
}

/// One unmasked server frame.
pub(crate) fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_server_frame(&mut out, true, opcode, payload);
    out
}

/// A server close frame with `code` and `reason`.
pub(crate) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    encode_close_payload(&mut payload, code, reason);
    server_frame(OpCode::Close, &payload)
}
