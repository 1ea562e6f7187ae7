//! meshd's flags. Every flag is also read from the environment as `MESHD_<FLAG>` (a flag on
//! the command line wins); the packaged unit reads them from `/etc/default/meshd`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::addr::{self, Advertise};

/// Where published ports are served on the underlay interface.
///
/// `tc` is the default: on a veth (the lab, most VMs' virtio too), native XDP makes the kernel
/// split GSO super-packets into MTU-sized frames before the program sees them, so a bulk TCP
/// flow through a node drops to about a quarter of its speed (measured: iperf3 19 Gbit/s with
/// no program, 5 Gbit/s with an `XDP_PASS` program attached); tc runs after GSO/GRO and keeps
/// them whole. `xdp` wins on small packets (fewer per-packet costs, remote backends
/// encapsulated and sent with `XDP_TX`), and on NICs with native XDP support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatapathArg {
    Tc,
    Xdp,
}

/// The engine when neither `--engine`, `MESHD_ENGINE` nor `DOCKER_HOST` names one.
pub const DEFAULT_ENGINE: &str = "unix:///var/run/docker.sock";

#[derive(Parser, Debug)]
#[command(
    name = "meshd",
    version,
    about = "meshd node daemon",
    after_help = "Every flag can also be set in the environment as MESHD_<FLAG> (the packaged unit reads /etc/default/meshd); a flag on the command line wins."
)]
pub struct Args {
    /// Run inside this network namespace (a name from `ip netns`); the lab uses it.
    #[arg(long, env = "MESHD_NETNS")]
    pub netns: Option<String>,
    /// Where the node keeps its raft log, state, certificates and socket.
    #[arg(long, env = "MESHD_DATA_DIR", default_value = "/var/lib/meshd")]
    pub data_dir: PathBuf,
    /// The node's name in the cluster (default: the machine's hostname).
    #[arg(long, env = "MESHD_HOSTNAME")]
    pub hostname: Option<String>,
    /// The address other nodes reach this one at: an IPv4 address, or an interface name (its
    /// first IPv4 address, in meshd's network namespace). Default: the address of the
    /// interface of the default route when there is exactly one; else `swarm init/join` ask
    /// for it.
    #[arg(long, env = "MESHD_ADVERTISE_ADDR", value_name = "ADDR|INTERFACE", value_parser = addr::parse)]
    pub advertise_addr: Option<Advertise>,
    /// Where the routing mesh serves published ports: tc (keeps GSO: best for bulk TCP on
    /// veth) or xdp (best for small packets, and on NICs with native XDP).
    #[arg(long, env = "MESHD_DATAPATH", value_enum, default_value = "tc")]
    pub datapath: DatapathArg,
    /// The node's Docker engine, where its tasks run: `unix:///PATH`. Without the flag or
    /// `MESHD_ENGINE`, docker's `DOCKER_HOST` is read as docker reads it, then
    /// `unix:///var/run/docker.sock`.
    #[arg(long, env = "MESHD_ENGINE", value_name = "unix:///PATH")]
    pub engine: Option<String>,
    /// Balance a task's connections to a service VIP when it connects (cgroup socket
    /// programs: no per-packet translation); `false` leaves them to the per-packet tc program.
    #[arg(long, env = "MESHD_SOCKET_LB", default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub socket_lb: bool,
    /// Idle time after which a mesh TCP flow is balanced again (to the same backend while the
    /// backends are unchanged, so an idle connection survives it).
    #[arg(long, env = "MESHD_CONNTRACK_TCP_TIMEOUT", default_value = "24h", value_parser = duration)]
    pub conntrack_tcp_timeout: Duration,
    /// The same for UDP flows.
    #[arg(long, env = "MESHD_CONNTRACK_UDP_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub conntrack_udp_timeout: Duration,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` over HTTP at `IP:PORT` (Docker's
    /// `metrics-addr` convention: port 9323). Off by default.
    #[arg(long, env = "MESHD_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve Docker's Engine API on this unix socket (mode 0660): the swarm calls answered
    /// through this meshd, everything else passed to the engine, so `docker` pointed at it
    /// sees a Swarm node. `none` turns it off.
    #[arg(long, env = "MESHD_DOCKER_API_SOCKET", default_value = DEFAULT_DOCKER_API_SOCKET, value_name = "PATH|none")]
    pub docker_api_socket: String,
    /// Also serve the Engine API on TCP at `IP:PORT` with mutual TLS, as `dockerd --tlsverify`
    /// does (Docker's port: 2376): clients must present a certificate of
    /// `--docker-api-tlscacert`.
    #[arg(long, env = "MESHD_DOCKER_API_TCP", value_name = "IP:PORT",
          requires_all = ["docker_api_tlscacert", "docker_api_tlscert", "docker_api_tlskey"])]
    pub docker_api_tcp: Option<std::net::SocketAddr>,
    /// The CA (PEM) whose certificates `--docker-api-tcp`'s clients present (dockerd's
    /// `--tlscacert`).
    #[arg(long, env = "MESHD_DOCKER_API_TLSCACERT", value_name = "PEM")]
    pub docker_api_tlscacert: Option<PathBuf>,
    /// `--docker-api-tcp`'s certificate (PEM; dockerd's `--tlscert`).
    #[arg(long, env = "MESHD_DOCKER_API_TLSCERT", value_name = "PEM")]
    pub docker_api_tlscert: Option<PathBuf>,
    /// `--docker-api-tcp`'s private key (PEM; dockerd's `--tlskey`).
    #[arg(long, env = "MESHD_DOCKER_API_TLSKEY", value_name = "PEM")]
    pub docker_api_tlskey: Option<PathBuf>,
    /// The resolv.conf whose `nameserver` lines are the upstreams of the tasks' DNS (names
    /// outside the cluster), read again every few seconds (kubelet's `--resolv-conf`).
    #[arg(
        long,
        env = "MESHD_RESOLV_CONF",
        default_value = "/etc/resolv.conf",
        value_name = "PATH"
    )]
    pub resolv_conf: PathBuf,
}

/// `--docker-api-tcp` and its TLS files (clap makes sure all four come together).
#[derive(Clone, Debug)]
pub struct DockerApiTcp {
    pub addr: std::net::SocketAddr,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Args {
    pub fn docker_api_tcp(&self) -> Option<DockerApiTcp> {
        Some(DockerApiTcp {
            addr: self.docker_api_tcp?,
            ca: self.docker_api_tlscacert.clone()?,
            cert: self.docker_api_tlscert.clone()?,
            key: self.docker_api_tlskey.clone()?,
        })
    }
}

/// Where the Engine API is served without `--docker-api-socket`.
pub const DEFAULT_DOCKER_API_SOCKET: &str = "/run/meshd/docker.sock";

/// The Engine API socket `--docker-api-socket` asks for; `None` for `none`.
pub fn docker_api_socket(flag: &str) -> Option<PathBuf> {
    (flag != "none").then(|| PathBuf::from(flag))
}

/// The engine socket's path in an `--engine` address (`unix:///PATH` or `/PATH`).
pub fn engine_socket_path(engine: &str) -> PathBuf {
    PathBuf::from(engine.strip_prefix("unix://").unwrap_or(engine))
}

fn duration(s: &str) -> Result<Duration, String> {
    match mesh_cluster::spec::parse_duration(s) {
        Ok(0) => Err(format!("invalid duration {s:?}: it must be longer than 0")),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(e) => Err(e.0),
    }
}

/// The engine's address, in this order: `--engine` (or `MESHD_ENGINE`), `DOCKER_HOST` (unless
/// empty, as docker reads it), [`DEFAULT_ENGINE`]. Only a unix socket is accepted; the error
/// names where the refused value came from.
pub fn engine_address(flag: Option<&str>, docker_host: Option<&str>) -> Result<String, String> {
    let (addr, from) = match (flag, docker_host) {
        (Some(f), _) => (f, "--engine (MESHD_ENGINE)"),
        (None, Some(d)) if !d.is_empty() => (d, "DOCKER_HOST"),
        _ => (DEFAULT_ENGINE, "the default"),
    };
    if addr.starts_with("unix://") || addr.starts_with('/') {
        Ok(addr.to_owned())
    } else {
        Err(format!(
            "invalid engine {addr:?} from {from}: give the engine's unix socket as unix:///PATH (for example {DEFAULT_ENGINE})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_is_also_an_environment_variable() {
        // The template the package installs as /etc/default/meshd names every variable.
        let template = include_str!("../../packaging/default");
        let cmd = Args::command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let want = format!("MESHD_{}", long.replace('-', "_").to_uppercase());
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long}"
            );
            assert!(
                template.contains(&format!("#{want}=")),
                "--{long}: add #{want}= to packaging/default"
            );
        }
    }

    #[test]
    fn the_default_file_names_every_variable() {
        let default = include_str!("../../packaging/default");
        for arg in Args::command().get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_str().unwrap();
                assert!(
                    default.contains(&format!("#{env}=")),
                    "packaging/default lacks {env}"
                );
            }
        }
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "meshd",
            "--advertise-addr",
            "eth0",
            "--datapath",
            "xdp",
            "--conntrack-udp-timeout",
            "30s",
        ])
        .unwrap();
        assert_eq!(a.advertise_addr, Some(Advertise::Interface("eth0".into())));
        assert_eq!(a.datapath, DatapathArg::Xdp);
        assert_eq!(a.conntrack_udp_timeout, Duration::from_secs(30));
        let e = Args::try_parse_from(["meshd", "--advertise-addr", "10.0.0.300"]).unwrap_err();
        assert!(e.to_string().contains("not an IPv4 address"), "{e}");
        let e = Args::try_parse_from(["meshd", "--conntrack-tcp-timeout", "0s"]).unwrap_err();
        assert!(e.to_string().contains("longer than 0"), "{e}");
    }

    #[test]
    fn socket_lb_is_on_by_default_and_takes_true_or_false() {
        assert!(Args::try_parse_from(["meshd"]).unwrap().socket_lb);
        let a = Args::try_parse_from(["meshd", "--socket-lb=false"]).unwrap();
        assert!(!a.socket_lb);
        let e = Args::try_parse_from(["meshd", "--socket-lb", "off"]).unwrap_err();
        assert!(e.to_string().contains("true"), "{e}");
    }

    #[test]
    fn the_docker_api_socket_is_on_by_default_and_none_turns_it_off() {
        let a = Args::try_parse_from(["meshd"]).unwrap();
        assert_eq!(
            docker_api_socket(&a.docker_api_socket),
            Some(PathBuf::from(DEFAULT_DOCKER_API_SOCKET))
        );
        let a = Args::try_parse_from(["meshd", "--docker-api-socket", "none"]).unwrap();
        assert_eq!(docker_api_socket(&a.docker_api_socket), None);
        // TCP needs its three TLS files, as dockerd --tlsverify does.
        let e = Args::try_parse_from(["meshd", "--docker-api-tcp", "0.0.0.0:2376"]).unwrap_err();
        assert!(e.to_string().contains("--docker-api-tlscacert"), "{e}");
        assert_eq!(
            engine_socket_path("unix:///run/e.sock"),
            PathBuf::from("/run/e.sock")
        );
    }

    #[test]
    fn the_engine_flag_wins_over_docker_host_which_wins_over_the_default() {
        let flag = Some("unix:///run/a.sock");
        let host = Some("unix:///run/b.sock");
        assert_eq!(engine_address(flag, host).unwrap(), "unix:///run/a.sock");
        assert_eq!(engine_address(None, host).unwrap(), "unix:///run/b.sock");
        assert_eq!(engine_address(None, None).unwrap(), DEFAULT_ENGINE);
        // Docker reads an empty DOCKER_HOST as unset.
        assert_eq!(engine_address(None, Some("")).unwrap(), DEFAULT_ENGINE);
        assert_eq!(
            engine_address(Some("/run/c.sock"), None).unwrap(),
            "/run/c.sock"
        );
    }

    #[test]
    fn an_engine_that_is_not_a_unix_socket_is_refused_with_its_source() {
        let e = engine_address(Some("tcp://10.0.0.1:2375"), None).unwrap_err();
        assert!(
            e.contains("\"tcp://10.0.0.1:2375\" from --engine (MESHD_ENGINE)"),
            "{e}"
        );
        assert!(e.contains("unix:///PATH"), "{e}");
        let e = engine_address(None, Some("ssh://me@host")).unwrap_err();
        assert!(e.contains("from DOCKER_HOST"), "{e}");
    }
}
