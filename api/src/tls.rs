//! The cluster's certificates and the TLS configurations built from them.
//!
//! `swarm init` makes a root CA (ECDSA P-256, `mesh_manager::ca`). Every node certificate carries the node id
//! as its CN, the role as its OU (`meshd-manager` / `meshd-worker`) and the cluster id as its O;
//! managers also carry the DNS name `meshd-manager`, which is the name every client checks, so a
//! worker's certificate cannot pose as a manager. The 2377 listener asks for a client certificate
//! but lets a TLS client without one in: such a client may only join. A joiner does not trust the
//! manager by CA yet; it pins the CA digest from its token instead ([`pinned_client_config`]).
//!
//! Node certificates expire (the cluster's `--cert-expiry`); every verifier here checks the
//! validity dates (webpki), so an expired certificate fails the handshake. A running node swaps
//! in its renewed certificate without restarting anything ([`LiveCredentials`]). Admin client
//! certificates (OU `meshd-admin`) open the cluster API only.

use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use mesh_cluster::Id;
use mesh_cluster::state::NodeRole;
use mesh_cluster::token::ca_digest;

use crate::private;
use mesh_cluster::certs::Validity;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The name every manager certificate carries and every client checks.
pub const MANAGER_NAME: &str = "meshd-manager";
/// The OU (and DNS name) of worker certificates.
pub const WORKER_NAME: &str = "meshd-worker";
/// The OU of admin client certificates (`meshctl swarm ca --admin-cert`).
pub const ADMIN_NAME: &str = "meshd-admin";

mod live;
pub use live::LiveCredentials;

/// The OU that says `role`.
pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => MANAGER_NAME,
        NodeRole::Worker => WORKER_NAME,
    }
}

/// The one crypto provider compiled in (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who a node certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertIdentity {
    pub node_id: Id,
    pub role: NodeRole,
    pub cluster_id: Id,
    /// When the certificate expires (unix seconds): a connection outliving it is refused.
    pub not_after: i64,
}

/// Who an admin client certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminIdentity {
    /// Its CN (`admin-...`).
    pub name: String,
    pub cluster_id: Id,
    pub not_after: i64,
}

/// What a client certificate of the cluster is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSubject {
    Node(CertIdentity),
    Admin(AdminIdentity),
}

/// Reads a certificate's subject (CN, OU, O) and its expiry: a node's (the role as OU) or an
/// admin's.
pub fn subject(der: &[u8]) -> Result<CertSubject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("unreadable certificate: {e}"))?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let cn = first(&mut subject.iter_common_name()).context("certificate without CN")?;
    let ou = first(&mut subject.iter_organizational_unit()).context("certificate without OU")?;
    let o = first(&mut subject.iter_organization()).context("certificate without O")?;
    let not_after = cert.validity().not_after.timestamp();
    let role = match ou.as_str() {
        MANAGER_NAME => NodeRole::Manager,
        WORKER_NAME => NodeRole::Worker,
        ADMIN_NAME => {
            return Ok(CertSubject::Admin(AdminIdentity {
                name: cn,
                cluster_id: Id::from(o),
                not_after,
            }));
        }
        other => bail!("certificate with unknown role {other:?}"),
    };
    Ok(CertSubject::Node(CertIdentity {
        node_id: Id::from(cn),
        role,
        cluster_id: Id::from(o),
        not_after,
    }))
}

/// Reads node id (CN), role (OU) and cluster (O) from a node certificate.
pub fn identify(der: &[u8]) -> Result<CertIdentity> {
    match subject(der)? {
        CertSubject::Node(id) => Ok(id),
        CertSubject::Admin(a) => bail!(
            "{} is an admin certificate ({ADMIN_NAME}), not a node's",
            a.name
        ),
    }
}

/// When a PEM certificate is valid.
pub fn validity(pem: &str) -> Result<Validity> {
    let der = cert_der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("unreadable certificate: {e}"))?;
    Ok(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn cert_der(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| anyhow!("bad certificate PEM: {e}"))
}

/// Every certificate of a PEM text, in order: a chain (a certificate and the cross-signed root
/// during a CA rotation) or a bundle of roots.
fn certs_der(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        bail!("no certificate in the PEM text");
    }
    Ok(certs)
}

/// A digest of a bundle of roots (`ca.pem`): a node whose bundle differs from the swarm's
/// renews its certificate (a CA rotation).
pub fn bundle_digest(ca_pem: &str) -> Result<String> {
    let all: Vec<u8> = certs_der(ca_pem)?.iter().flat_map(|c| c.to_vec()).collect();
    Ok(ca_digest(&all))
}

/// The DER of a PEM certificate.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    Ok(cert_der(pem)?.to_vec())
}

/// The token digest of a CA certificate given as PEM.
pub fn ca_pem_digest(ca_pem: &str) -> Result<String> {
    Ok(ca_digest(&cert_der(ca_pem)?))
}

/// What Docker prints as "TLS Info" of a node: the issuer's subject and public key, base64.
pub fn issuer_info(ca_pem: &str) -> Result<(String, String)> {
    let der = cert_der(ca_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("unreadable certificate: {e}"))?;
    Ok((
        base64(cert.subject().as_raw()),
        base64(cert.public_key().raw),
    ))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A node's TLS material: the cluster CA, its certificate and its key. On disk under
/// `<data-dir>/certs/` (0700) as `ca.pem`, `node.pem` and `node-key.pem` (each 0600); `meshctl --host
/// tcp://...` reads the same files.
#[derive(Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(Self {
            ca_pem: read("ca.pem")?,
            cert_pem: read("node.pem")?,
            key_pem: read("node-key.pem")?,
        })
    }

    /// Writes the three files into `dir` (0700), each 0600.
    pub fn save(&self, dir: &Path) -> Result<()> {
        private::private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in [
            ("ca.pem", &self.ca_pem),
            ("node.pem", &self.cert_pem),
            ("node-key.pem", &self.key_pem),
        ] {
            let path = dir.join(name);
            private::write_private(&path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Fails, saying so, when the certificate has expired at unix time `now` (managers would
    /// refuse it in the handshake, and the client would see only a closed connection).
    pub fn check_not_expired(&self, now: i64) -> Result<()> {
        let v = validity(&self.cert_pem)?;
        if v.expired(now) {
            bail!(
                "the certificate expired {}s ago (at unix time {}): nodes renew theirs before it happens; a node that was stopped past its expiry must join again, and an admin certificate is replaced with a new one (`meshctl swarm ca --admin-cert DIR` on a manager)",
                now - v.not_after,
                v.not_after
            );
        }
        Ok(())
    }

    /// Who this certificate says we are.
    pub fn identity(&self) -> Result<CertIdentity> {
        identify(&cert_der(&self.cert_pem)?)
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for root in certs_der(&self.ca_pem)? {
            roots.add(root)?;
        }
        Ok(roots)
    }

    /// Our certificate chain as a client shows it.
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        certs_der(&self.cert_pem)
    }

    /// ... and as the 2377 server shows it: with the roots, which a joiner pins.
    fn server_chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        Ok([self.chain()?, certs_der(&self.ca_pem)?].concat())
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| anyhow!("bad key PEM: {e}"))
    }

    /// The 2377 listener's: our certificate (with the CA), client certificates checked against
    /// the CA but optional (a client without one may only join).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
                .allow_unauthenticated()
                .build()?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain()?, self.key()?)?;
        live::no_resumption(&mut cfg);
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// For calls to managers: we show our certificate; the server must be a manager of our CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain()?, self.key()?)?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// A TLS client without a certificate that trusts managers of the CA `ca_pem`.
pub fn anonymous_client_config(ca_pem: &str) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der(ca_pem)?)?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// What a joiner learnt about the manager's CA during the handshake.
#[derive(Debug, Default)]
pub struct PinOutcome {
    /// Set when the manager's chain holds no CA with the pinned digest: the digests it had.
    pub mismatch: Option<Vec<String>>,
    /// The manager's CA (PEM-less DER), when it matched.
    pub ca_der: Option<Vec<u8>>,
}

/// The server verifier of a joiner: the manager's chain must contain a CA whose digest is the
/// token's, and the manager's certificate must be a manager certificate signed by that CA. Only
/// then does the joiner send its secret.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    digest: String,
    outcome: Arc<Mutex<PinOutcome>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut outcome = self
            .outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(ca) = intermediates.iter().find(|c| ca_digest(c) == self.digest) else {
            outcome.mismatch = Some(intermediates.iter().map(|c| ca_digest(c)).collect());
            return Err(rustls::Error::General(
                "the manager's root CA does not match the join token".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        outcome.ca_der = Some(ca.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client for joining: no certificate, and the manager accepted only if its CA hashes to
/// `digest`. The returned outcome says, after the handshake, what was found.
pub fn pinned_client_config(digest: &str) -> Result<(Arc<ClientConfig>, Arc<Mutex<PinOutcome>>)> {
    let outcome = Arc::new(Mutex::new(PinOutcome::default()));
    let verifier = PinnedCaVerifier {
        digest: digest.to_owned(),
        outcome: outcome.clone(),
        provider: provider(),
    };
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(cfg), outcome))
}

/// The server name clients ask for: every manager certificate carries it.
pub fn manager_server_name() -> ServerName<'static> {
    ServerName::try_from(MANAGER_NAME).expect("a valid DNS name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
