//! The lab's registry, as Docker Hub is for a real cluster: Debian's `docker-registry` in its own
//! namespace `P-reg` on the switch at `.5`, port 5000, with TLS from a CA the lab makes at `up`.
//! Every node engine trusts that CA (`certs.d/<addr>:5000/ca.crt` in its own `/etc/docker`).
//! The lab pushes its images there once (skopeo, from the host's dockerd); nodes pull them.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::LabPlan;
use crate::image::ExportedImage;

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The lab CA and the registry's certificate, all PEM.
pub struct RegistryTls {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// A new lab CA (named after the lab) and a server certificate for `addr` signed by it.
pub fn make_tls(prefix: &str, addr: Ipv4Addr) -> Result<RegistryTls> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("meshd lab {prefix} CA"));
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, addr.to_string());
    leaf.distinguished_name = dn;
    leaf.subject_alt_names = vec![SanType::IpAddress(addr.into())];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(RegistryTls {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The registry's `config.yml`: TLS on `listen`, storage in `root`, deletes allowed (a lab user
/// may clean up what they pushed).
pub fn config_yaml(listen: &str, root: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {listen}\n  tls:\n    certificate: {}\n    key: {}\n",
        root.display(),
        cert.display(),
        key.display()
    )
}

/// Writes the CA (its key 0600 beside the trust folder, not in it: `--dest-cert-dir` and
/// `certs.d` take every `*.key` there for a client key) and the registry's files.
pub fn write_tls(plan: &LabPlan) -> Result<()> {
    let tls = make_tls(&plan.prefix, plan.registry_addr())?;
    let ca_dir = plan.ca_cert().parent().context("CA path")?.to_path_buf();
    fs::create_dir_all(&ca_dir)?;
    fs::write(plan.ca_cert(), &tls.ca_cert)?;
    mesh_api::private::write_private(&plan.state_dir().join("ca.key"), tls.ca_key.as_bytes())?;
    let dir = plan.registry_dir();
    fs::create_dir_all(dir.join("data"))?;
    fs::write(dir.join("registry.crt"), &tls.cert)?;
    mesh_api::private::write_private(&dir.join("registry.key"), tls.key.as_bytes())?;
    fs::write(
        dir.join("config.yml"),
        config_yaml(
            &plan.registry_host(),
            &dir.join("data"),
            &dir.join("registry.crt"),
            &dir.join("registry.key"),
        ),
    )?;
    Ok(())
}

/// Starts the registry in `P-reg` without waiting for it.
pub fn spawn(plan: &LabPlan) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    if !Path::new(REGISTRY_BINARY).exists() {
        bail!("{REGISTRY_BINARY} not found: install docker-registry (./scripts/deps.sh)");
    }
    let log = fs::File::create(plan.registry_log())?;
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", plan.registry_ns()))
        .args([REGISTRY_BINARY, "serve"])
        .arg(plan.registry_dir().join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the lab registry")
}

/// Waits until the registry listens on port 5000 (seen in its own namespace's socket table).
pub fn wait_ready(plan: &LabPlan, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let table = format!("/proc/{}/net/tcp", child.id());
    loop {
        if fs::read_to_string(&table).is_ok_and(|t| listens_on(&t, crate::plan::REGISTRY_PORT)) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the lab registry exited during start-up ({status}); its log {} ends with:\n{}",
                plan.registry_log().display(),
                crate::tail(&plan.registry_log(), 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the lab registry did not listen within {START_TIMEOUT:?}; see {}",
                plan.registry_log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Does a `/proc/net/tcp` table hold a listening socket (state `0A`) on `port`?
pub fn listens_on(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.get(3) == Some(&"0A")
            && cols
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .is_some_and(|(_, p)| p == want)
    })
}

/// Pushes of the lab images under way: each image's short name and its skopeo.
pub struct Pushing(Vec<(&'static str, Child)>);

/// Starts pushing every lab image at once, from its exported layout.
pub fn start_push(plan: &LabPlan, images: &[ExportedImage]) -> Result<Pushing> {
    let mut running = Vec::new();
    for image in images {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", plan.registry_ns()))
            .args(["skopeo", "copy", "-q", "--dest-cert-dir"])
            .arg(plan.ca_cert().parent().unwrap_or(Path::new("/")))
            .arg(format!("oci:{}:latest", image.layout.display()))
            .arg(format!("docker://{}:latest", plan.image(image.name)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running skopeo (./scripts/deps.sh installs it)")?;
        running.push((image.name, child));
    }
    Ok(Pushing(running))
}

/// Waits for the pushes; the first that failed says why.
pub fn finish_push(plan: &LabPlan, pushing: Pushing) -> Result<()> {
    for (name, child) in pushing.0 {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "pushing {} to the lab registry failed: {}",
                plan.image(name),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_certificate_names_its_address_and_is_signed_by_the_lab_ca() {
        use x509_parser::prelude::*;
        let addr = Ipv4Addr::new(198, 18, 4, 5);
        let tls = make_tls("mesh", addr).unwrap();
        let (_, ca_pem) = parse_x509_pem(tls.ca_cert.as_bytes()).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        assert!(ca.is_ca());
        let (_, pem) = parse_x509_pem(tls.cert.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert!(!cert.is_ca());
        assert_eq!(cert.issuer(), ca.subject());
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(
            san.value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::IPAddress(ip) if *ip == [198, 18, 4, 5])),
            "{:?}",
            san.value
        );
        assert!(tls.key.contains("PRIVATE KEY") && tls.ca_key.contains("PRIVATE KEY"));
    }

    #[test]
    fn the_config_serves_tls_on_the_lab_address() {
        let y = config_yaml(
            "198.18.4.5:5000",
            Path::new("/s/registry/data"),
            Path::new("/s/r.crt"),
            Path::new("/s/r.key"),
        );
        assert!(y.contains("  addr: 198.18.4.5:5000\n"), "{y}");
        assert!(y.contains("rootdirectory: /s/registry/data\n"), "{y}");
        assert!(
            y.contains("certificate: /s/r.crt\n") && y.contains("key: /s/r.key\n"),
            "{y}"
        );
    }

    #[test]
    fn a_listening_socket_is_found_in_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 051212C6:1388 00000000:0000 0A 00000000:00000000\n   1: 051212C6:1389 0B1212C6:9C40 01 00000000:00000000\n";
        assert!(listens_on(table, 5000));
        assert!(
            !listens_on(table, 5001),
            "an established socket is no listener"
        );
        assert!(!listens_on("header only\n", 5000));
    }
}
