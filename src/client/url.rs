//! `ws://` and `wss://` URLs: the parts the opening handshake needs (RFC 6455 §3).
//!
//! Owns: splitting `ws[s]://host[:port][/path][?query]` into the TCP target, TLS or not, the
//! `Host` header and the request target. May not touch: name resolution (the driver resolves
//! `host:port`).

/// Default port of the `ws` scheme (§3).
const WS_DEFAULT_PORT: u16 = 80;
/// Default port of the `wss` scheme (§3).
const WSS_DEFAULT_PORT: u16 = 443;

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
    /// `wss://`: TLS (§3: "secure" flag).
    pub tls: bool,
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Only `ws://` and `wss://` are supported.
    #[error("unsupported scheme: only ws:// and wss:// are supported")]
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
    /// Parses `ws[s]://host[:port][/path][?query]` (scheme case-insensitive).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (rest, tls) = strip_scheme(url).ok_or(UrlError::UnsupportedScheme)?;
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let default_port = if tls {
            WSS_DEFAULT_PORT
        } else {
            WS_DEFAULT_PORT
        };
        let (host, port) = split_host_port(authority, default_port)?;
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
            tls,
        })
    }
}

/// The rest after the scheme, and whether it is `wss`.
fn strip_scheme(url: &str) -> Option<(&str, bool)> {
    let (scheme, rest) = url.split_once("://")?;
    match () {
        _ if scheme.eq_ignore_ascii_case("ws") => Some((rest, false)),
        _ if scheme.eq_ignore_ascii_case("wss") => Some((rest, true)),
        _ => None,
    }
}

/// Splits `host[:port]` and `[v6][:port]`.
fn split_host_port(authority: &str, default_port: u16) -> Result<(&str, u16), UrlError> {
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
        None => default_port,
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
    fn wss_is_tls_on_port_443_by_default() {
        let u = WsUrl::parse("WSS://relay.example/ws").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host.as_str()),
            (true, 443, "relay.example")
        );
        let u = WsUrl::parse("wss://127.0.0.1:9443").unwrap();
        assert_eq!((u.tls, u.port), (true, 9443));
        assert!(!WsUrl::parse("ws://a/").unwrap().tls);
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        assert_eq!(WsUrl::parse("wsx://a/"), Err(UrlError::UnsupportedScheme));
        assert_eq!(WsUrl::parse("http://a/"), Err(UrlError::UnsupportedScheme));
        assert_eq!(WsUrl::parse("ws://:80/"), Err(UrlError::MissingHost));
        assert_eq!(WsUrl::parse("ws://a:0/"), Err(UrlError::InvalidPort));
        assert_eq!(WsUrl::parse("ws://a:x/"), Err(UrlError::InvalidPort));
        assert_eq!(WsUrl::parse("ws://a/#f"), Err(UrlError::Fragment));
    }
}
