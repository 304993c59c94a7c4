//! PEM files named in the config (a webhook's `ca_file`, the API's `tls_cert` and `tls_key`),
//! read at load so that `check-config` names a wrong file instead of the first connection.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
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
