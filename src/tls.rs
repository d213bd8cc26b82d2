//! The relay's TLS settings: `--tls-cert`, `--tls-key` and `--tls-client-ca` read into one
//! rustls `ServerConfig` (`TlsServer`), shared by every loop through `Config::tls`.
//!
//! Owns: reading and checking the PEM files, and the TLS policy: TLS 1.2 and 1.3 only, the
//! `ring` provider's default cipher suites (AEAD only: AES-GCM and ChaCha20-Poly1305, ECDHE
//! key exchange; no CBC, no RSA key exchange), ALPN `http/1.1` (RFC 7301), client
//! certificates required and verified against `--tls-client-ca` when it is given (mTLS).
//! May not touch: sockets (the per-connection state machine is `runtime/tls.rs`).
//!
//! The files are read at start-up and again on every reload (SIGHUP): a new `TlsServer` is
//! built and published with the rest of the configuration; new connections take it, open ones
//! keep the session they have. A file that cannot be read or parsed refuses the whole reload,
//! so the old certificate stays in force (the error is logged by the caller).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Largest PEM file read (a chain of a few certificates is a few KiB).
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// The ALPN protocol the relay speaks (RFC 7301 §6; WebSocket upgrades are HTTP/1.1).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Where the relay's certificate, key and (for mTLS) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The file could not be read (or is over `PEM_FILE_BYTES_MAX`).
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error or the size.
        reason: String,
    },
    /// No PEM `CERTIFICATE` block in the file.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// No PEM private key block in the file.
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    /// A PEM block did not decode.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificate, the key (e.g. they do not match) or the client CA.
    #[error("{0}")]
    Rejected(String),
}

/// A loaded, checked TLS configuration.
pub struct TlsServer {
    files: TlsFiles,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsServer {
    // The files only: a reload compares settings by their `Debug` text, and key material is
    // never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads and checks `files`.
    pub fn load(files: TlsFiles) -> Result<Self, TlsConfigError> {
        let chain = read_certs(&files.cert)?;
        let key = read_key(&files.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsConfigError::Rejected(e.to_string()))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots.add(cert).map_err(|e| {
                        TlsConfigError::Rejected(format!("{}: {e}", path.display()))
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsConfigError::Rejected(format!("{}: {e}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsConfigError::Rejected(format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(TlsServer {
            files,
            config: Arc::new(config),
        })
    }

    /// The files it was read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The rustls configuration new connections are made with.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Client certificates are required (mTLS).
    pub fn requires_client_cert(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    let fail = |reason: String| TlsConfigError::Read {
        path: path.to_owned(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > PEM_FILE_BYTES_MAX {
        return Err(fail(format!("{len} bytes, over {PEM_FILE_BYTES_MAX}")));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read_bounded(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    match certs.is_empty() {
        true => Err(TlsConfigError::NoCertificate(path.to_owned())),
        false => Ok(certs),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = read_bounded(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoKey(path.to_owned()),
        e => TlsConfigError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}
