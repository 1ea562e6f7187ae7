//! The Engine API on TCP with mutual TLS, as `dockerd --tlsverify` serves it: the server's
//! certificate and key, and the CA whose certificates clients must present (docker's
//! `--tlscacert`, `--tlscert`, `--tlskey`; the CLI's `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`).

use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// A server configuration that requires a client certificate signed by `ca_pem`.
pub fn server_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the CA file is not PEM certificates: {e}"))?;
    if cas.is_empty() {
        return Err(anyhow!("the CA file holds no certificate"));
    }
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| anyhow!("the CA certificate is not usable: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| anyhow!("the client verifier: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the certificate file is not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err(anyhow!("the certificate file holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow!("the key file holds no PEM private key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("the certificate and key do not make a server identity: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_refused_with_which() {
        let e = server_config(b"", b"", b"").unwrap_err().to_string();
        assert!(e.contains("CA file holds no certificate"), "{e}");
    }
}
