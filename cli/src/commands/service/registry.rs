//! The image flags of `service create` / `update` that concern registries, as docker has them:
//! `--no-resolve-image` (keep the tag, do not pin a digest) and `--with-registry-auth` (send the
//! client's login for the image's registry, read from `~/.docker/config.json` as docker reads
//! it, so that the nodes can pull a private image).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mesh_api::ImageOptions;
use mesh_cluster::state::RegistryAuth;
use serde::Deserialize;

/// Docker Hub's key in `config.json`, as `docker login` writes it.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// `--with-registry-auth`, `--no-resolve-image` (Docker's names).
#[derive(Args, Debug, Default, Clone)]
pub struct RegistryArgs {
    /// Send registry authentication details to the nodes that run the service's tasks.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Do not query the registry to resolve the image digest (keep the tag).
    #[arg(long)]
    pub no_resolve_image: bool,
}

impl RegistryArgs {
    /// The request's image options for `image`; `resolve` when the command asks for a
    /// resolution (create always, update when `--image` is given) unless `--no-resolve-image`.
    pub(crate) fn options(&self, image: &str, resolve: bool) -> Result<ImageOptions> {
        let registry_auth = if self.with_registry_auth {
            let (auth, note) = load_login(image)?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            auth
        } else {
            None
        };
        Ok(ImageOptions {
            resolve: resolve && !self.no_resolve_image,
            registry_auth,
        })
    }
}

/// Prints a reply's warnings on stderr, as the docker CLI prints the daemon's.
pub(crate) fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

/// The docker CLI's configuration file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// The client's login for `image`'s registry, with a note for the user when there is none to
/// send. A file that cannot be parsed is an error (nothing is sent).
fn load_login(image: &str) -> Result<(Option<RegistryAuth>, Option<String>)> {
    let registry = registry_key(image);
    let Some(path) = docker_config_path() else {
        return Ok((
            None,
            Some(format!(
                "--with-registry-auth: neither DOCKER_CONFIG nor HOME is set: no login for {registry} is sent"
            )),
        ));
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((
                None,
                Some(format!(
                    "--with-registry-auth: {} does not exist (docker login writes it): no login for {registry} is sent",
                    path.display()
                )),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let found =
        find_login(&text, &registry).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let note = match &found {
        Lookup::Found(_) => None,
        Lookup::Missing { helpers: true } => Some(format!(
            "--with-registry-auth: {} names a credential helper (credsStore/credHelpers), which meshctl does not run; only \"auths\" entries with an \"auth\" field are read: no login for {registry} is sent",
            path.display()
        )),
        Lookup::Missing { helpers: false } => Some(format!(
            "--with-registry-auth: {} has no login for {registry}: none is sent",
            path.display()
        )),
    };
    Ok((found.into_auth(), note))
}

/// What the part of `config.json` meshctl reads holds.
#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Found(RegistryAuth),
    /// No usable entry; `helpers`: the file names credential helpers meshctl does not run.
    Missing {
        helpers: bool,
    },
}

impl Lookup {
    fn into_auth(self) -> Option<RegistryAuth> {
        match self {
            Self::Found(a) => Some(a),
            Self::Missing { .. } => None,
        }
    }
}

/// The login `config.json` (its text) holds for `registry` (a key as [`registry_key`] makes it).
/// Keys are compared as docker compares them: by host name, without scheme or path.
fn find_login(config: &str, registry: &str) -> Result<Lookup, String> {
    let cfg: DockerConfig =
        serde_json::from_str(config).map_err(|e| format!("not a docker config file: {e}"))?;
    let want = hostname(registry);
    let entry = cfg
        .auths
        .get(registry)
        .or_else(|| {
            cfg.auths
                .iter()
                .find(|(k, _)| hostname(k) == want)
                .map(|(_, v)| v)
        })
        .and_then(|e| e.auth.as_deref())
        .filter(|a| !a.is_empty());
    let Some(encoded) = entry else {
        return Ok(Lookup::Missing {
            helpers: cfg.creds_store.is_some() || !cfg.cred_helpers.is_empty(),
        });
    };
    let decoded = decode_base64(encoded)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| format!("the \"auth\" of {registry} is not base64 of USER:PASSWORD"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("the \"auth\" of {registry} is not base64 of USER:PASSWORD"))?;
    Ok(Lookup::Found(RegistryAuth {
        server: registry.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

/// The `config.json` key of the registry `image` is pulled from, as docker makes it: the
/// reference's first component when it looks like a host (has a `.` or `:`, or is `localhost`),
/// else Docker Hub (`https://index.docker.io/v1/`).
pub(super) fn registry_key(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            if first == "docker.io" || first == "index.docker.io" {
                DOCKER_HUB_KEY.to_owned()
            } else {
                first.to_owned()
            }
        }
        _ => DOCKER_HUB_KEY.to_owned(),
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io` (docker's `ConvertToHostname`).
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Standard base64 (with or without padding), as `docker login` writes `auth`.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let body = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    // Six leftover bits cannot come from a whole number of bytes.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auths: &str) -> String {
        format!(r#"{{"auths": {{{auths}}}}}"#)
    }

    #[test]
    fn registries_are_found_as_docker_finds_them() {
        for (image, key) in [
            ("nginx", DOCKER_HUB_KEY),
            ("library/nginx:1.25", DOCKER_HUB_KEY),
            ("docker.io/library/nginx", DOCKER_HUB_KEY),
            ("index.docker.io/library/nginx", DOCKER_HUB_KEY),
            ("127.0.0.1:5000/meshd/busybox:latest", "127.0.0.1:5000"),
            ("198.18.3.5:5000/x@sha256:00", "198.18.3.5:5000"),
            ("localhost/x", "localhost"),
            ("registry.example.org/team/app", "registry.example.org"),
            ("team/app", DOCKER_HUB_KEY),
        ] {
            assert_eq!(registry_key(image), key, "{image}");
        }
        assert_eq!(hostname(DOCKER_HUB_KEY), "index.docker.io");
        assert_eq!(hostname("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
    }

    #[test]
    fn logins_come_from_the_auths_entry() {
        // alice:s3cr:et (a colon in the password stays in it).
        let cfg = config(r#""127.0.0.1:5000": {"auth": "YWxpY2U6czNjcjpldA=="}"#);
        assert_eq!(
            find_login(&cfg, "127.0.0.1:5000").unwrap(),
            Lookup::Found(RegistryAuth {
                server: "127.0.0.1:5000".into(),
                username: "alice".into(),
                password: "s3cr:et".into(),
            })
        );
        // Keys with a scheme and path match by host, as `docker login` may write them.
        let hub = config(r#""https://index.docker.io/v1/": {"auth": "Ym9iOnB3"}"#);
        let Lookup::Found(a) = find_login(&hub, &registry_key("nginx")).unwrap() else {
            panic!("Docker Hub's login not found");
        };
        assert_eq!((a.username.as_str(), a.password.as_str()), ("bob", "pw"));
        let schemed = config(r#""http://127.0.0.1:5000": {"auth": "Ym9iOnB3"}"#);
        assert!(matches!(
            find_login(&schemed, "127.0.0.1:5000").unwrap(),
            Lookup::Found(_)
        ));
    }

    #[test]
    fn missing_or_helper_logins_send_nothing_and_bad_ones_are_refused() {
        assert_eq!(
            find_login(&config(""), "127.0.0.1:5000").unwrap(),
            Lookup::Missing { helpers: false }
        );
        let helper = r#"{"auths": {"127.0.0.1:5000": {}}, "credsStore": "pass"}"#;
        assert_eq!(
            find_login(helper, "127.0.0.1:5000").unwrap(),
            Lookup::Missing { helpers: true }
        );
        let err = find_login(&config(r#""r:1": {"auth": "!!"}"#), "r:1").unwrap_err();
        assert!(err.contains("not base64 of USER:PASSWORD"), "{err}");
        let err = find_login(&config(r#""r:1": {"auth": "bm9jb2xvbg=="}"#), "r:1").unwrap_err();
        assert!(err.contains("USER:PASSWORD"), "{err}");
        assert!(
            find_login("not json", "r:1")
                .unwrap_err()
                .contains("not a docker config")
        );
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("YWxpY2U6cHc=").unwrap(), b"alice:pw");
        assert_eq!(decode_base64("YWxpY2U6cHc").unwrap(), b"alice:pw");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Z"), None);
        assert_eq!(decode_base64("a b"), None);
    }
}
