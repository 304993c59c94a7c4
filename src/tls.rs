//! TLS with rustls and its ring provider (the same the SMTP sink uses through lettre): a
//! client that trusts the system's roots (and an optional `ca_file`), for https webhooks, and
//! a server from a certificate chain and key in PEM files, for the API (`api.tls_cert`,
//! `api.tls_key`). Both speak TLS 1.2 and 1.3 only, with rustls' default cipher suites.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", .path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: not a certificate this system can use: {source}", .path.display())]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: the certificate and the key do not go together or are refused: {source}", .cert.display())]
    Server {
        cert: PathBuf,
        source: rustls::Error,
    },
    #[error("no trusted root certificates: none in the system's store and no ca_file")]
    NoRoots,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The system's trusted roots (Debian: /etc/ssl/certs), read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in found.errors.iter().take(3) {
            tracing::warn!(error = %e, "a system root certificate cannot be read");
        }
        found.certs
    })
}

/// A client trusting the system's roots and those of `ca_file`.
pub fn client(ca_file: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let files: Vec<PathBuf> = ca_file.map(Path::to_path_buf).into_iter().collect();
    client_trusting(&files)
}

/// A client trusting the system's roots and every certificate of `files`.
pub fn client_trusting(files: &[PathBuf]) -> Result<TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    for path in files {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|source| TlsError::BadCertificate {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::BadCertificate {
            path: PathBuf::new(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A server presenting the chain of `cert` (PEM, the server's certificate first) with the key
/// of `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn server(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        path: key.to_path_buf(),
        source,
    })?;
    let refused = |source| TlsError::Server {
        cert: cert.to_path_buf(),
        source,
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(refused)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
