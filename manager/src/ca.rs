//! The cluster's certificate authority: the root CA `swarm init` makes, node keys and their
//! signing requests, and the node certificates a manager issues (rcgen). What the certificates
//! carry, and the TLS configurations built from them, are `mesh_api::tls`.

use anyhow::{Context, Result, anyhow};
use mesh_api::tls::role_name;
use mesh_cluster::Id;
use mesh_cluster::state::NodeRole;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

const CA_NAME: &str = "meshd-ca";

/// A new root CA for cluster `cluster_id`: (certificate PEM, key PEM).
pub fn generate_ca(cluster_id: &Id) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, cluster_id.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A node's private key, made on the node; only its CSR leaves it.
pub struct NodeKey(KeyPair);

impl NodeKey {
    pub fn generate() -> Result<Self> {
        Ok(Self(KeyPair::generate()?))
    }

    /// A certificate signing request (the manager decides the subject; this proves the key).
    pub fn csr_pem(&self) -> Result<String> {
        let params = CertificateParams::default();
        Ok(params.serialize_request(&self.0)?.pem()?)
    }

    pub fn key_pem(&self) -> String {
        self.0.serialize_pem()
    }
}

/// Signs the key of `csr_pem` as node `node_id` with `role` in `cluster_id`, with the CA.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    csr_pem: &str,
    cluster_id: &Id,
    node_id: &Id,
    role: NodeRole,
) -> Result<String> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| anyhow!("invalid certificate signing request: {e}"))?;
    let ca_key = KeyPair::from_pem(ca_key_pem).context("reading the cluster CA key")?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).context("reading the cluster CA")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id.as_str());
    dn.push(DnType::OrganizationalUnitName, role_name(role));
    dn.push(DnType::OrganizationName, cluster_id.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(role_name(role).try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params.signed_by(&csr.public_key, &issuer)?.pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::tls::{
        CertIdentity, Credentials, anonymous_client_config, ca_pem_digest, issuer_info,
    };

    fn node(ca: &(String, String), cluster: &Id, role: NodeRole) -> Credentials {
        let key = NodeKey::generate().unwrap();
        let cert = issue(
            &ca.0,
            &ca.1,
            &key.csr_pem().unwrap(),
            cluster,
            &Id::from("node1"),
            role,
        )
        .unwrap();
        Credentials {
            ca_pem: ca.0.clone(),
            cert_pem: cert,
            key_pem: key.key_pem(),
        }
    }

    #[test]
    fn node_certificates_carry_id_role_and_cluster() {
        let cluster = Id::from("c1");
        let ca = generate_ca(&cluster).unwrap();
        let m = node(&ca, &cluster, NodeRole::Manager);
        assert_eq!(
            m.identity().unwrap(),
            CertIdentity {
                node_id: Id::from("node1"),
                role: NodeRole::Manager,
                cluster_id: cluster.clone(),
            }
        );
        let w = node(&ca, &cluster, NodeRole::Worker);
        assert_eq!(w.identity().unwrap().role, NodeRole::Worker);
        // Every configuration builds from them.
        m.server_config().unwrap();
        m.client_config().unwrap();
        anonymous_client_config(&ca.0).unwrap();
        assert_eq!(ca_pem_digest(&ca.0).unwrap().len(), 50);
        let (subject, key) = issuer_info(&ca.0).unwrap();
        assert!(!subject.is_empty() && !key.is_empty());
    }

    #[test]
    fn a_bad_csr_is_refused() {
        let cluster = Id::from("c1");
        let ca = generate_ca(&cluster).unwrap();
        let e = issue(
            &ca.0,
            &ca.1,
            "garbage",
            &cluster,
            &Id::from("n"),
            NodeRole::Worker,
        )
        .unwrap_err();
        assert!(e.to_string().contains("certificate signing request"), "{e}");
    }
}
