//! `ws://` URLs: the parts the opening handshake needs (RFC 6455 §3).
//!
//! Owns: splitting `ws://host[:port][/path][?query]` into the TCP target, the `Host` header
//! and the request target. May not touch: name resolution (the driver resolves `host:port`).
//! `wss://` is refused: the library has no TLS.

/// Default port of the `ws` scheme (§3).
const WS_DEFAULT_PORT: u16 = 80;

/// A parsed `ws://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or address as written (IPv6 without the brackets).
    pub host: String,
    /// TCP port (80 when absent).
    pub port: u16,
    /// Value of the `Host` header: the authority as written (§4.1 item 4).
    pub host_header: String,
    /// Request target: path and query, `/` when absent.
    pub path_and_query: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Only `ws://` is supported (no TLS in this library).
    #[error("unsupported scheme: only ws:// is supported")]
    UnsupportedScheme,
    /// §3: the host part is empty.
    #[error("missing host")]
    MissingHost,
    /// The port is not a number in 1..=65535.
    #[error("invalid port")]
    InvalidPort,
    /// §3: fragment identifiers MUST NOT be used in WebSocket URIs.
    #[error("fragment not allowed in a WebSocket URL")]
    Fragment,
}

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` (scheme case-insensitive).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let rest = strip_scheme(url).ok_or(UrlError::UnsupportedScheme)?;
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority)?;
        let path_and_query = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(Self {
            host: host.to_string(),
            port,
            host_header: authority.to_string(),
            path_and_query,
        })
    }
}

fn strip_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    scheme.eq_ignore_ascii_case("ws").then_some(rest)
}

/// Splits `host[:port]` and `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, u16), UrlError> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or(UrlError::MissingHost)?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let port = match port {
        None => WS_DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(UrlError::InvalidPort)?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, u16, String, String) {
        let u = WsUrl::parse(url).unwrap();
        (u.host, u.port, u.host_header, u.path_and_query)
    }

    #[test]
    fn parses_host_port_path_query() {
        assert_eq!(
            parts("ws://127.0.0.1:8080/ws?x=1"),
            (
                "127.0.0.1".into(),
                8080,
                "127.0.0.1:8080".into(),
                "/ws?x=1".into()
            )
        );
        assert_eq!(
            parts("WS://example.com"),
            ("example.com".into(), 80, "example.com".into(), "/".into())
        );
        assert_eq!(
            parts("ws://[::1]:9000?q"),
            ("::1".into(), 9000, "[::1]:9000".into(), "/?q".into())
        );
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        assert_eq!(WsUrl::parse("wss://a/"), Err(UrlError::UnsupportedScheme));
        assert_eq!(WsUrl::parse("http://a/"), Err(UrlError::UnsupportedScheme));
        assert_eq!(WsUrl::parse("ws://:80/"), Err(UrlError::MissingHost));
        assert_eq!(WsUrl::parse("ws://a:0/"), Err(UrlError::InvalidPort));
        assert_eq!(WsUrl::parse("ws://a:x/"), Err(UrlError::InvalidPort));
        assert_eq!(WsUrl::parse("ws://a/#f"), Err(UrlError::Fragment));
    }
}
