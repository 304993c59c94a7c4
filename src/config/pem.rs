//! PEM files named in the config (a webhook's `ca_file`, the API's `tls_cert` and `tls_key`),
//! read at load so that `check-config` names a wrong file instead of the first connection.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// How many certificates the PEM file at `path` holds (at least one), or why it is unusable.
pub(super) fn certificates(path: &Path) -> Result<usize, String> {
    let shown = path.display();
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs.len())
}

/// Whether the PEM file at `path` holds a private key (PKCS#8, PKCS#1 or SEC1).
pub(super) fn private_key(path: &Path) -> Result<(), String> {
    PrivateKeyDer::from_pem_file(path)
        .map(drop)
        .map_err(|e| format!("{}: no private key read: {e}", path.display()))
}
