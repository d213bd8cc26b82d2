//! `wss://` for the swarm (`--tls`, `--tls-ca FILE`, `--tls-insecure`): one rustls client
//! configuration shared by every connection, each connection a sans-IO `ClientConnection`
//! driven by the driver thread's mio loop like the relay's (`read_tls`/`process_new_packets`/
//! `write_tls`).
//!
//! Owns: trust (a CA file, the one the relay's certificate was made with; or none at all with
//! `--tls-insecure`, for a self-signed certificate on loopback: never for a server elsewhere)
//! and the server name sent in SNI. May not touch: sockets.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

/// How the swarm trusts the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// CA certificates (PEM) the server's chain must lead to.
    CaFile(std::path::PathBuf),
    /// No verification (self-signed certificates on loopback).
    Insecure,
}

/// The TLS clients of a run against any server: by group, then by URL (`None`: plain `ws://`).
pub type TlsClients = Vec<Vec<Option<TlsClient>>>;

/// The client side of the swarm's TLS: configuration and server name.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// A configuration for `host` (the URL's host, without the port) with `trust`.
    pub fn new(host: &str, trust: &Trust) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match trust {
            Trust::CaFile(path) => builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let bare = host
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or(host);
        let name = ServerName::try_from(bare.to_string()).map_err(|e| format!("{host}: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }

    /// A new session (its ClientHello is written at the first flush).
    pub fn session(&self) -> std::io::Result<Box<ClientConnection>> {
        ClientConnection::new(self.config.clone(), self.name.clone())
            .map(Box::new)
            .map_err(std::io::Error::other)
    }
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    match roots.is_empty() {
        true => Err(format!("{}: no certificate", path.display())),
        false => Ok(roots),
    }
}

/// `--tls-insecure`: accepts any certificate (signatures are still checked, so the handshake
/// is a real one and costs what a verified one costs on the server).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
