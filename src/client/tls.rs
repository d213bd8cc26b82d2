//! `wss://` for the client library: the rustls configuration (trust: the system's roots, a
//! given CA, or the caller's own rustls configuration) and plaintext reads and writes through
//! a rustls `ClientConnection` over the driver's non-blocking socket.
//!
//! Owns: trust and the TLS record I/O of one socket. May not touch: the WebSocket session
//! (it sees plaintext exactly as over `ws://`). TLS 1.2 and 1.3, the `ring` provider's
//! default cipher suites, ALPN `http/1.1`, the URL's host as the server name (SNI and the
//! certificate check).
//!
//! Bounds: rustls' own (incoming records ≤ 16.7 KiB, plaintext read ≤ 16 KiB, outgoing
//! records ≤ 64 KiB: beyond it the session's transmit buffer keeps the rest).

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// How a `wss://` connection trusts the server.
#[derive(Clone, Default)]
pub enum TlsTrust {
    /// The operating system's trust store (`rustls-native-certs`). The default.
    #[default]
    SystemRoots,
    /// Only these CA certificates (PEM, one or more), e.g. a private CA's.
    CaPem(Vec<u8>),
    /// A complete rustls configuration (client certificates for mTLS, pinning, …). Its ALPN
    /// list should hold `http/1.1` or be empty.
    Config(Arc<ClientConfig>),
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SystemRoots => f.write_str("SystemRoots"),
            Self::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
            Self::Config(_) => f.write_str("Config(..)"),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetupError {
    /// No usable certificate among the given or system roots.
    #[error("no trusted root certificate: {0}")]
    NoRoots(String),
    /// The URL's host is not a valid server name.
    #[error("invalid server name {0}")]
    ServerName(String),
}

/// What each connection of one client is made with.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsSetup {
    /// The configuration for `host` under `trust`.
    pub(crate) fn new(host: &str, trust: &TlsTrust) -> Result<Self, TlsSetupError> {
        let config = match trust {
            TlsTrust::Config(config) => config.clone(),
            TlsTrust::CaPem(pem) => build(ca_roots(pem)?),
            TlsTrust::SystemRoots => build(system_roots()?),
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| TlsSetupError::ServerName(host.to_string()))?;
        Ok(Self { config, name })
    }

    /// A session for one connection.
    pub(crate) fn connect(&self) -> io::Result<Box<ClientConnection>> {
        ClientConnection::new(self.config.clone(), self.name.clone())
            .map(Box::new)
            .map_err(io::Error::other)
    }
}

fn build(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The ring provider supports the safe default versions (TLS 1.2 and 1.3).
    let builder =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(builder) => builder,
            Err(_) => ClientConfig::builder(),
        };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn ca_roots(pem: &[u8]) -> Result<RootCertStore, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::NoRoots(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    match added {
        0 => Err(TlsSetupError::NoRoots(
            "no certificate in the CA PEM".into(),
        )),
        _ => Ok(roots),
    }
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    match added {
        0 => Err(TlsSetupError::NoRoots(format!(
            "none in the system store ({} errors)",
            found.errors.len()
        ))),
        _ => Ok(roots),
    }
}

/// Reads plaintext: what rustls already decrypted, else records from `socket` until some
/// plaintext comes out. `Ok(0)`: the server closed (with or without `close_notify`);
/// `WouldBlock`: nothing more now. Handshake records are written as they are produced (the
/// rest by `write`, called by the driver's flush).
pub(crate) fn read(
    tls: &mut ClientConnection,
    socket: &mut mio::net::TcpStream,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let processed = tls.process_new_packets();
        // Our handshake flight, or the alert rustls queued on a failure (best effort).
        while tls.wants_write() && tls.write_tls(socket).is_ok_and(|n| n > 0) {}
        if let Err(e) = processed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// Hands `data` to rustls (as much as its bounded buffer takes) and writes its records.
/// Returns how much of `data` was taken; `WouldBlock` only when nothing could be done.
pub(crate) fn write(
    tls: &mut ClientConnection,
    socket: &mut mio::net::TcpStream,
    data: &[u8],
) -> io::Result<usize> {
    let taken = match data.is_empty() {
        true => 0,
        false => tls.writer().write(data)?,
    };
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}

/// `close_notify` after our last bytes, best effort (RFC 8446 §6.1).
pub(crate) fn close(tls: &mut ClientConnection, socket: &mut mio::net::TcpStream) {
    tls.send_close_notify();
    while tls.wants_write() && tls.write_tls(socket).is_ok_and(|n| n > 0) {}
}
