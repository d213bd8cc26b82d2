//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and the permessage-deflate negotiation
//! (RFC 7692 §5-7), for both roles, sans-IO and without compression code.
//!
//! Owns: the header grammar (`1#extension`, `extension = token *(";" param)`,
//! `param = token ["=" (token | quoted-string)]`), the four permessage-deflate parameters and
//! their rules, the server's choice among offers, the exact response text, and the client's
//! offer and check of the server's answer.
//! May not touch: sockets, compression state (see `proto::deflate`).
//!
//! What is refused and what is declined:
//! - A header that does not follow the §9.1 grammar refuses the handshake (400).
//! - A syntactically valid permessage-deflate offer with an unknown parameter, a parameter
//!   with an invalid value, or a repeated parameter is *declined* (RFC 7692 §5: "A server MUST
//!   decline an extension negotiation offer for this extension if ..."): the next offer is
//!   tried, and without an acceptable one the handshake succeeds without compression.
//! - Offers of other extensions are ignored (we support none).

/// The extension token (RFC 7692 §6).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";
/// Smallest and largest LZ77 window, as base-2 logarithms (RFC 7692 §7.1.2).
pub const WINDOW_BITS_MIN: u8 = 8;
/// See [`WINDOW_BITS_MIN`].
pub const WINDOW_BITS_MAX: u8 = 15;
/// Offers looked at, in order: a longer list is refused (400), bounding the work per request.
pub const OFFERS_MAX: usize = 16;
/// Parameters per offer: more refuses the handshake (400).
pub const PARAMS_MAX: usize = 8;

/// The header does not follow RFC 6455 §9.1 (or exceeds [`OFFERS_MAX`]/[`PARAMS_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedExtensions;

/// One parameter of an offer: its name and its value (quotes removed), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// Parameter name (a token).
    pub name: &'a str,
    /// Value, unquoted: a token (§9.1 requires a quoted value to be a token once unquoted).
    pub value: Option<&'a str>,
}

/// One extension of the list: its name and up to [`PARAMS_MAX`] parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    /// Extension token.
    pub name: &'a str,
    params: [Option<Param<'a>>; PARAMS_MAX],
}

impl<'a> Offer<'a> {
    /// The parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = Param<'a>> + '_ {
        self.params.iter().map_while(|p| *p)
    }
}

/// Parameters of an accepted permessage-deflate agreement, seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window limit (`server_max_window_bits`), `None` = 15.
    pub server_max_window_bits: Option<u8>,
    /// The client's LZ77 window limit (`client_max_window_bits` with a value), `None` = 15.
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The window the server compresses with (2^bits bytes).
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(WINDOW_BITS_MAX)
    }
}

/// What an offer asked for, before the server decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct OfferedDeflate {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value; `Some(Some(n))`: with value `n`.
    client_max_window_bits: Option<Option<u8>>,
}

/// How the server may answer, decided per connection by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPolicy {
    /// A per-connection context is available: the server may keep its compression context
    /// across messages (and accept the client's takeover) when the offer allows it.
    pub takeover_available: bool,
}

/// Splits every field of the header into offers, in order (fields are concatenated as one
/// comma list, RFC 7230 §3.2.2). Calls `each` per offer; stops at the first malformed byte.
pub fn parse_offers<'a>(
    fields: &[&'a str],
    mut each: impl FnMut(Offer<'a>),
) -> Result<(), MalformedExtensions> {
    let mut count = 0;
    for field in fields {
        let mut rest = *field;
        loop {
            rest = skip_ows(rest);
            if rest.is_empty() {
                break;
            }
            // §9.1 `1#extension`: empty list elements are allowed (RFC 7230 §7).
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
                continue;
            }
            count += 1;
            if count > OFFERS_MAX {
                return Err(MalformedExtensions);
            }
            let (offer, after) = parse_extension(rest)?;
            each(offer);
            rest = skip_ows(after);
            match rest.strip_prefix(',') {
                Some(after) => rest = after,
                None if rest.is_empty() => break,
                None => return Err(MalformedExtensions),
            }
        }
    }
    Ok(())
}

/// Parses `token *(OWS ";" OWS param)` at the front of `input`; returns the rest.
fn parse_extension(input: &str) -> Result<(Offer<'_>, &str), MalformedExtensions> {
    let (name, mut rest) = take_token(input)?;
    let mut offer = Offer {
        name,
        params: [None; PARAMS_MAX],
    };
    let mut n = 0;
    loop {
        rest = skip_ows(rest);
        let Some(after) = rest.strip_prefix(';') else {
            return Ok((offer, rest));
        };
        let (param_name, after) = take_token(skip_ows(after))?;
        let after = skip_ows(after);
        let (value, after) = match after.strip_prefix('=') {
            Some(v) => {
                let (value, after) = take_value(skip_ows(v))?;
                (Some(value), after)
            }
            None => (None, after),
        };
        let slot = offer.params.get_mut(n).ok_or(MalformedExtensions)?;
        *slot = Some(Param {
            name: param_name,
            value,
        });
        n += 1;
        rest = after;
    }
}

/// A token or a quoted string whose content is a token (§9.1), quotes removed.
fn take_value(input: &str) -> Result<(&str, &str), MalformedExtensions> {
    let Some(quoted) = input.strip_prefix('"') else {
        return take_token(input);
    };
    // No quoted-pair: a backslash cannot be part of a token, so it is malformed here.
    let end = quoted.find('"').ok_or(MalformedExtensions)?;
    let (inner, after) = (&quoted[..end], &quoted[end + 1..]);
    match take_token(inner)? {
        (token, "") => Ok((token, after)),
        _ => Err(MalformedExtensions),
    }
}

/// The longest non-empty run of token characters (RFC 7230 §3.2.6) at the front.
fn take_token(input: &str) -> Result<(&str, &str), MalformedExtensions> {
    let end = input
        .bytes()
        .position(|b| !is_tchar(b))
        .unwrap_or(input.len());
    match end {
        0 => Err(MalformedExtensions),
        _ => Ok(input.split_at(end)),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_ows(input: &str) -> &str {
    input.trim_start_matches([' ', '\t'])
}

/// A window-bits value: a decimal integer 8..=15 without leading zeros (RFC 7692 §7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (WINDOW_BITS_MIN..=WINDOW_BITS_MAX)
        .contains(&bits)
        .then_some(bits)
}

/// Reads one permessage-deflate offer; `None` = decline it (RFC 7692 §5: unknown parameter,
/// invalid value, or a parameter given twice).
fn read_deflate_offer(offer: &Offer<'_>) -> Option<OfferedDeflate> {
    let mut o = OfferedDeflate::default();
    let mut seen = [false; 4];
    for p in offer.params() {
        let index = match p.name {
            "server_no_context_takeover" if p.value.is_none() => {
                o.server_no_context_takeover = true;
                0
            }
            "client_no_context_takeover" if p.value.is_none() => {
                o.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                o.server_max_window_bits = Some(window_bits(p.value?)?);
                2
            }
            "client_max_window_bits" => {
                o.client_max_window_bits = Some(match p.value {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                });
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(o)
}

/// Chooses the first acceptable permessage-deflate offer (RFC 7692 §5: the server accepts at
/// most one, and the client lists offers by preference). `Ok(None)`: no compression.
///
/// What the relay answers (docs/PROTOCOL.md, "Compression"):
/// - `server_no_context_takeover` unless the offer allows takeover *and* the policy has a
///   context for this connection (§7.1.1.1 lets the server add it unasked);
/// - `client_no_context_takeover` whenever the client offered it, and also unasked when no
///   per-connection context is available (§7.1.1.2), so that one inflater per loop serves
///   every connection;
/// - `server_max_window_bits=N` when offered (accepted with the same value, §7.1.2.1);
/// - never `client_max_window_bits`: the relay inflates with a 32 KiB window, which reads
///   any client window (§7.1.2.2 makes the answer optional).
pub fn negotiate_server(
    fields: &[&str],
    policy: ServerPolicy,
) -> Result<Option<DeflateParams>, MalformedExtensions> {
    let mut chosen = None;
    parse_offers(fields, |offer| {
        if chosen.is_some() || !offer.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            return;
        }
        chosen = read_deflate_offer(&offer);
    })?;
    Ok(chosen.map(|o| {
        let takeover = policy.takeover_available && !o.server_no_context_takeover;
        DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: o.client_no_context_takeover || !takeover,
            server_max_window_bits: o.server_max_window_bits,
            client_max_window_bits: None,
        }
    }))
}

/// Appends the response value (`permessage-deflate; ...`) for `params`.
pub fn encode_response(out: &mut String, params: &DeflateParams) {
    out.push_str(PERMESSAGE_DEFLATE);
    if params.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = params.server_max_window_bits {
        out.push_str("; server_max_window_bits=");
        push_bits(out, bits);
    }
    if let Some(bits) = params.client_max_window_bits {
        out.push_str("; client_max_window_bits=");
        push_bits(out, bits);
    }
}

fn push_bits(out: &mut String, bits: u8) {
    if bits >= 10 {
        out.push('1');
    }
    out.push(char::from(b'0' + bits % 10));
}

/// The client's offer: `permessage-deflate; client_max_window_bits`, plus
/// `server_no_context_takeover` and `client_no_context_takeover` when asked.
pub fn client_offer(no_context_takeover: bool) -> String {
    let mut out = String::from(PERMESSAGE_DEFLATE);
    if no_context_takeover {
        out.push_str("; server_no_context_takeover; client_no_context_takeover");
    }
    out.push_str("; client_max_window_bits");
    out
}

/// The client's check of the server's answer to [`client_offer`] (RFC 7692 §5: the client
/// MUST fail the connection if the response has an unknown parameter, an invalid value, a
/// repeated parameter, more than one permessage-deflate, or another extension). Returns the
/// agreed parameters (as seen from the server's side).
pub fn accept_client(fields: &[&str]) -> Result<DeflateParams, MalformedExtensions> {
    let mut found = None;
    let mut bad = false;
    parse_offers(fields, |ext| {
        if found.is_some() || !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            bad = true;
            return;
        }
        found = read_deflate_offer(&ext);
        bad |= found.is_none();
    })?;
    // In an answer `client_max_window_bits` needs its value (RFC 7692 §7.1.2.2).
    let bare_client_bits = found.is_some_and(|o| o.client_max_window_bits == Some(None));
    match (found, bad || bare_client_bits) {
        (Some(o), false) => Ok(DeflateParams {
            server_no_context_takeover: o.server_no_context_takeover,
            client_no_context_takeover: o.client_no_context_takeover,
            server_max_window_bits: o.server_max_window_bits,
            client_max_window_bits: o.client_max_window_bits.flatten(),
        }),
        _ => Err(MalformedExtensions),
    }
}

#[cfg(test)]
mod tests;
