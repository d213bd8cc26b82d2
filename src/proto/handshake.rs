//! Opening handshake (RFC 6455 §4) for both roles: request/response head parsing, upgrade
//! validation, Sec-WebSocket-Accept, and the exact bytes of 101 and error responses.
//!
//! Owns: HTTP/1.1 head syntax (via `httparse`, fixed header table), the §4.2.1 checks, the
//! accept key, subprotocol selection, and the client's request and §4.1 response checks.
//! May not touch: sockets, routing of plain HTTP requests (the caller uses [`wants_websocket`]).
//!
//! Invariants:
//! - A head is at most [`REQUEST_HEAD_BYTES_MAX`] bytes (431 beyond) and has at most
//!   [`HEADERS_MAX`] fields (431 beyond); parsing never allocates.
//! - Repeated header policy (RFC 7230 §3.2.2): `Upgrade` and `Connection` are comma lists and
//!   may be split over several fields; their tokens are checked across all occurrences
//!   ([`RequestHead::upgrade_websocket`], [`RequestHead::connection_upgrade`]) while the
//!   `upgrade`/`connection` fields keep the first occurrence. `Host` (RFC 7230 §5.4),
//!   `Sec-WebSocket-Key` (§11.3.1), `Sec-WebSocket-Version` and `Sec-WebSocket-Protocol`
//!   must appear at most once: a borrowed `&str` cannot join several fields without
//!   allocating, and browsers send one, so a repeat is rejected as `DuplicateHeader`.
//!   `X-Forwarded-For` and `Forwarded` are lists whose fields are kept in order (the last
//!   [`crate::proto::forwarded::FIELDS_MAX`]) for `proto::forwarded`.
//! - Emitted heads use CRLF line endings and contain only caller-trusted header values.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::proto::error::{ClientHandshakeError, HandshakeError};
use crate::proto::forwarded::HeaderFields;
use crate::proto::Decode;

/// Largest request head, request line through the empty line, in bytes.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8192;
/// Largest response head accepted by the client role, in bytes.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 8192;
/// Size of the fixed header table: more fields than this is `TooManyHeaders` (431).
pub const HEADERS_MAX: usize = 48;

/// §1.3: the GUID appended to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// §4.1: the key is 16 random bytes.
const KEY_NONCE_BYTES: usize = 16;
/// Base64 length of 16 bytes (with `==` padding).
const KEY_BASE64_BYTES: usize = 24;
/// The only version we speak (§4.4).
const WEBSOCKET_VERSION: &str = "13";

/// The parts of an HTTP request head that routing and the upgrade need. Header names are
/// matched case-insensitively; values are trimmed of surrounding whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestHead<'a> {
    /// Request method, e.g. `GET`.
    pub method: &'a str,
    /// Request target without the query.
    pub path: &'a str,
    /// The query after `?`, if any.
    pub query: Option<&'a str>,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version_minor: u8,
    /// `Host`.
    pub host: Option<&'a str>,
    /// First `Upgrade` field.
    pub upgrade: Option<&'a str>,
    /// First `Connection` field.
    pub connection: Option<&'a str>,
    /// `Sec-WebSocket-Version`.
    pub ws_version: Option<&'a str>,
    /// `Sec-WebSocket-Key`.
    pub ws_key: Option<&'a str>,
    /// `Sec-WebSocket-Protocol` (comma list of offered subprotocols).
    pub ws_protocol: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Cookie`.
    pub cookie: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// Whether any `Upgrade` field holds the token `websocket` (computed by the parser).
    pub upgrade_websocket: bool,
    /// Whether any `Connection` field holds the token `upgrade` (computed by the parser).
    pub connection_upgrade: bool,
    /// `X-Forwarded-For` fields, in order (read only from trusted proxies: `forwarded`).
    pub x_forwarded_for: HeaderFields<'a>,
    /// `Forwarded` fields (RFC 7239), in order (read only from trusted proxies).
    pub forwarded: HeaderFields<'a>,
    /// `Sec-WebSocket-Extensions` fields, in order (a comma list, RFC 6455 §9.1).
    pub ws_extensions: HeaderFields<'a>,
    /// How many `Sec-WebSocket-Extensions` fields there were (more than
    /// [`crate::proto::forwarded::FIELDS_MAX`] refuses the negotiation: 400).
    pub ws_extension_fields: u8,
}

/// A validated WebSocket upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// Request path without the query.
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// `Sec-WebSocket-Key`, to compute the accept value.
    pub key: &'a str,
    /// Offered subprotocols (comma list).
    pub protocols: Option<&'a str>,
    /// `Origin`, for the caller's origin policy (§10.2).
    pub origin: Option<&'a str>,
}

/// The client role's view of a successful 101 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// Always 101 when returned by [`parse_response_head`].
    pub status: u16,
    /// The subprotocol selected by the server, if any.
    pub protocol: Option<&'a str>,
    /// `Sec-WebSocket-Extensions` fields (always empty from [`parse_response_head`], which
    /// refuses them; see [`parse_response_head_offered`]).
    pub extensions: HeaderFields<'a>,
}

/// Parses a request head at the front of `buf`. `Complete` carries the head length; the bytes
/// after it (frames sent early by an eager client) belong to the frame decoder.
///
/// `HeadTooLarge` as soon as `REQUEST_HEAD_BYTES_MAX` bytes do not hold a complete head: a
/// head of exactly that size is accepted, one byte more is not.
pub fn parse_request_head(buf: &[u8]) -> Result<Decode<RequestHead<'_>>, HandshakeError> {
    let window = buf.get(..REQUEST_HEAD_BYTES_MAX).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) if window.len() == REQUEST_HEAD_BYTES_MAX => {
            return Err(HandshakeError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Decode::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let (Some(method), Some(target), Some(version_minor)) =
        (request.method, request.path, request.version)
    else {
        return Err(HandshakeError::Malformed);
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut head = RequestHead {
        method,
        path,
        query,
        version_minor,
        ..RequestHead::default()
    };
    for header in request.headers.iter() {
        record_request_header(&mut head, header.name, header.value)?;
    }
    Ok(Decode::Complete(head, head_len))
}

/// Stores one header field into `head` according to the repeated-header policy.
fn record_request_header<'a>(
    head: &mut RequestHead<'a>,
    name: &'a str,
    raw: &'a [u8],
) -> Result<(), HandshakeError> {
    let slot = match name.len() {
        // Cheap length dispatch before the case-insensitive comparisons.
        4 if name.eq_ignore_ascii_case("host") => &mut head.host,
        6 if name.eq_ignore_ascii_case("origin") => &mut head.origin,
        6 if name.eq_ignore_ascii_case("cookie") => &mut head.cookie,
        7 if name.eq_ignore_ascii_case("upgrade") => {
            return record_list(
                &mut head.upgrade,
                &mut head.upgrade_websocket,
                raw,
                "websocket",
            )
        }
        10 if name.eq_ignore_ascii_case("connection") => {
            return record_list(
                &mut head.connection,
                &mut head.connection_upgrade,
                raw,
                "upgrade",
            )
        }
        9 if name.eq_ignore_ascii_case("forwarded") => {
            head.forwarded.push(forwarding_value(raw));
            return Ok(());
        }
        15 if name.eq_ignore_ascii_case("x-forwarded-for") => {
            head.x_forwarded_for.push(forwarding_value(raw));
            return Ok(());
        }
        13 if name.eq_ignore_ascii_case("authorization") => &mut head.authorization,
        24 if name.eq_ignore_ascii_case("sec-websocket-extensions") => {
            head.ws_extensions
                .push(header_value(raw).ok_or(HandshakeError::Malformed)?);
            head.ws_extension_fields = head.ws_extension_fields.saturating_add(1);
            return Ok(());
        }
        17 if name.eq_ignore_ascii_case("sec-websocket-key") => &mut head.ws_key,
        21 if name.eq_ignore_ascii_case("sec-websocket-version") => &mut head.ws_version,
        22 if name.eq_ignore_ascii_case("sec-websocket-protocol") => &mut head.ws_protocol,
        _ => return Ok(()),
    };
    if slot.is_some() {
        return Err(HandshakeError::DuplicateHeader);
    }
    *slot = Some(header_value(raw).ok_or(HandshakeError::Malformed)?);
    Ok(())
}

/// Records a comma-list header: keeps the first field, ORs the token test across all fields.
fn record_list<'a>(
    first: &mut Option<&'a str>,
    has_token: &mut bool,
    raw: &'a [u8],
    token: &str,
) -> Result<(), HandshakeError> {
    let value = header_value(raw).ok_or(HandshakeError::Malformed)?;
    *has_token |= list_has_token(value, token);
    first.get_or_insert(value);
    Ok(())
}

/// A forwarding header's value. Not UTF-8 (obs-text, RFC 9110 §5.5) is not a reason to refuse
/// a request whose forwarding headers may never be read: it becomes a hop that cannot be read,
/// which stops `forwarded::client_address` at the last trusted hop.
fn forwarding_value(raw: &[u8]) -> &str {
    header_value(raw).unwrap_or(crate::proto::forwarded::UNREADABLE_HOP)
}

/// A header value as trimmed UTF-8 text, or `None` if it is not UTF-8.
fn header_value(raw: &[u8]) -> Option<&str> {
    std::str::from_utf8(raw).ok().map(str::trim)
}

/// Whether the comma-separated `list` holds `token` (case-insensitive, optional whitespace).
pub fn list_has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Whether the request asks for a WebSocket upgrade (some `Upgrade` field has the token
/// `websocket`); other requests (e.g. `GET /metrics`) are routed elsewhere by the caller.
pub fn wants_websocket(head: &RequestHead<'_>) -> bool {
    head.upgrade_websocket
}

/// Checks the server-side requirements of §4.2.1, in the order of that section.
pub fn validate_upgrade<'a>(head: &RequestHead<'a>) -> Result<Upgrade<'a>, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if head.version_minor < 1 {
        return Err(HandshakeError::NotHttp11);
    }
    if head.host.is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !head.upgrade_websocket {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !head.connection_upgrade {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let key = head.ws_key.ok_or(HandshakeError::MissingKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    // §4.2.2 / §4.4: any version but 13 gets 426 with the versions we support.
    if head.ws_version != Some(WEBSOCKET_VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(Upgrade {
        path: head.path,
        query: head.query,
        key,
        protocols: head.ws_protocol,
        origin: head.origin,
    })
}

/// §4.1 / §11.3.1: the key is the base64 encoding of exactly 16 bytes.
fn is_valid_key(key: &str) -> bool {
    let mut decoded = [0u8; KEY_BASE64_BYTES];
    key.len() == KEY_BASE64_BYTES
        && BASE64
            .decode_slice(key, &mut decoded)
            .is_ok_and(|len| len == KEY_NONCE_BYTES)
}

/// The `Sec-WebSocket-Accept` value: base64(SHA-1(key + GUID)) (§4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// Picks the subprotocol to answer with: the first one in the client's offered order that we
/// support (exact, case-sensitive match: subprotocol names are tokens, §11.3.4). The client
/// lists by preference, so honouring its order is the conventional choice.
pub fn select_protocol<'a>(offered: Option<&'a str>, supported: &[String]) -> Option<&'a str> {
    offered?
        .split(',')
        .map(str::trim)
        .find(|offer| supported.iter().any(|ours| ours == offer))
}

/// Appends the 101 response that completes the handshake (§4.2.2 item 5).
pub fn encode_switching_protocols(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    push_header(out, "Sec-WebSocket-Accept", accept);
    if let Some(protocol) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    if let Some(extensions) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", extensions);
    }
    out.extend_from_slice(b"\r\n");
}

/// The value of cookie `name` in a `Cookie` header (RFC 6265 §4.2.1: `name=value` pairs
/// separated by `; `), without the optional double quotes around it. First match wins.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or(v)
        })
    })
}

/// True when `name` is a valid cookie name (RFC 6265 §4.1.1: an RFC 2616 token).
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// Appends a complete HTTP/1.1 response with a body, `Content-Length` and `Connection: close`.
pub fn encode_http_response(
    out: &mut Vec<u8>,
    status: u16,
    reason_phrase: &str,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase.as_bytes());
    out.extend_from_slice(b"\r\n");
    push_header(out, "Content-Type", content_type);
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\nConnection: close\r\n");
    for (name, value) in extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Appends the HTTP error answering a rejected handshake; a 426 lists our version (§4.4).
pub fn encode_handshake_error(out: &mut Vec<u8>, error: HandshakeError) {
    let version_header = [("Sec-WebSocket-Version", WEBSOCKET_VERSION)];
    let extra: &[(&str, &str)] = match error {
        HandshakeError::UnsupportedVersion => &version_header,
        _ => &[],
    };
    let mut body = [0u8; 128];
    let body_len = copy_line(&mut body, error.reason());
    let body = body.get(..body_len).unwrap_or_default();
    encode_http_response(
        out,
        error.status(),
        status_reason_phrase(error.status()),
        "text/plain; charset=utf-8",
        extra,
        body,
    );
}

/// Copies `text` + `\n` into `out` (truncated to fit) and returns the length.
fn copy_line(out: &mut [u8; 128], text: &str) -> usize {
    let len = text.len().min(out.len() - 1);
    out[..len].copy_from_slice(text.as_bytes().get(..len).unwrap_or_default());
    out[len] = b'\n';
    len + 1
}

/// Reason phrases of the statuses this module emits (RFC 9110 §15, RFC 6585 §5).
fn status_reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    }
}

/// Appends the client's opening handshake request (§4.1).
pub fn encode_client_request(
    out: &mut Vec<u8>,
    host: &str,
    path_and_query: &str,
    key: &str,
    protocol: Option<&str>,
    extra_headers: &[(&str, &str)],
) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_header(out, "Host", host);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    push_header(out, "Sec-WebSocket-Key", key);
    push_header(out, "Sec-WebSocket-Version", WEBSOCKET_VERSION);
    if let Some(protocol) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    for (name, value) in extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Sec-WebSocket-Key` for 16 caller-supplied random bytes (§4.1: a fresh random nonce).
pub fn generate_key(random16: [u8; KEY_NONCE_BYTES]) -> String {
    BASE64.encode(random16)
}

/// Parses and checks the server's response head (client role, §4.1). `Complete` carries the
/// head length; bytes after it are the server's first frames.
pub fn parse_response_head<'b>(
    buf: &'b [u8],
    expected_accept: &str,
) -> Result<Decode<ResponseHead<'b>>, ClientHandshakeError> {
    parse_response(buf, expected_accept, false)
}

/// [`parse_response_head`] for a client that offered extensions: the server's
/// `Sec-WebSocket-Extensions` fields are returned for the caller to check against its offer
/// (§4.1 item 5). More than [`crate::proto::forwarded::FIELDS_MAX`] fields is
/// `UnexpectedExtension`.
pub fn parse_response_head_offered<'b>(
    buf: &'b [u8],
    expected_accept: &str,
) -> Result<Decode<ResponseHead<'b>>, ClientHandshakeError> {
    parse_response(buf, expected_accept, true)
}

fn parse_response<'b>(
    buf: &'b [u8],
    expected_accept: &str,
    extensions_offered: bool,
) -> Result<Decode<ResponseHead<'b>>, ClientHandshakeError> {
    let window = buf.get(..RESPONSE_HEAD_BYTES_MAX).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) if window.len() == RESPONSE_HEAD_BYTES_MAX => {
            return Err(ClientHandshakeError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Decode::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ClientHandshakeError::TooManyHeaders),
        Err(_) => return Err(ClientHandshakeError::Malformed),
    };
    let status = response.code.ok_or(ClientHandshakeError::Malformed)?;
    if status != 101 {
        return Err(ClientHandshakeError::UnexpectedStatus(status));
    }
    let mut extensions = HeaderFields::default();
    let offered = extensions_offered.then_some(&mut extensions);
    let protocol = check_response_headers(response.headers, expected_accept, offered)?;
    Ok(Decode::Complete(
        ResponseHead {
            status,
            protocol,
            extensions,
        },
        head_len,
    ))
}

/// §4.1 items 2-6 over the response's header fields; returns the selected subprotocol.
fn check_response_headers<'b>(
    headers: &[httparse::Header<'b>],
    expected_accept: &str,
    mut extensions: Option<&mut HeaderFields<'b>>,
) -> Result<Option<&'b str>, ClientHandshakeError> {
    let (mut upgrade, mut connection, mut accept, mut protocol) = (false, false, None, None);
    let mut extension_fields = 0;
    for header in headers {
        let value = header_value(header.value).ok_or(ClientHandshakeError::Malformed)?;
        let name = header.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= list_has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= list_has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            // §4.1 item 5: only what was offered may be answered.
            let fields = extensions
                .as_deref_mut()
                .ok_or(ClientHandshakeError::UnexpectedExtension)?;
            extension_fields += 1;
            if extension_fields > crate::proto::forwarded::FIELDS_MAX {
                return Err(ClientHandshakeError::UnexpectedExtension);
            }
            fields.push(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol = Some(value);
        }
    }
    match (upgrade, connection, accept) {
        (false, _, _) => Err(ClientHandshakeError::MissingUpgrade),
        (_, false, _) => Err(ClientHandshakeError::MissingConnectionUpgrade),
        (_, _, None) => Err(ClientHandshakeError::MissingAccept),
        (_, _, Some(accept)) if accept != expected_accept => {
            Err(ClientHandshakeError::AcceptMismatch)
        }
        _ => Ok(protocol),
    }
}

/// Appends `name: value\r\n`.
fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `value` without allocating.
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests;
