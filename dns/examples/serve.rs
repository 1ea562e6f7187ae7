//! A mesh-dns server with a small fixed table, for trying it by hand and measuring it:
//!
//! ```sh
//! cargo run --release -p mesh-dns --example serve -- 127.0.0.1:5300
//! dig @127.0.0.1 -p 5300 web; dig @127.0.0.1 -p 5300 tasks.web
//! echo 'web A' > q.txt; dnsperf -s 127.0.0.1 -p 5300 -d q.txt -l 10
//! ```
//!
//! Network `bench` (10.10.0.0/16): `web` (vip 10.10.0.2, 3 tasks), `db` (dnsrr, 3 tasks).
//! Upstreams: those given with `MESH_DNS_UPSTREAMS=ip:port,...`, none by default (SERVFAIL).
//! `MESH_DNS_WORKERS=N` sets the UDP receivers; `MESH_DNS_THREADS=N` the runtime's threads.

use std::net::{IpAddr, SocketAddr};

use mesh_dns::{DnsConfig, DnsServer, NameTable, ServiceRecords, TaskRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:5300")
        .parse()?;
    let threads = env_number("MESH_DNS_THREADS").unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = DnsConfig::default();
        if let Some(workers) = env_number("MESH_DNS_WORKERS") {
            config.udp_workers = workers;
        }
        if let Ok(list) = std::env::var("MESH_DNS_UPSTREAMS") {
            config.upstreams = list.split(',').map(str::parse).collect::<Result<_, _>>()?;
        }
        let server = DnsServer::new(config, table()?);
        let bound = server.add_listener("bench", addr)?;
        println!("serving network bench on {bound} (udp, tcp); ctrl-c stops");
        tokio::signal::ctrl_c().await?;
        server.shutdown().await;
        println!("{:?}", server.stats());
        Ok(())
    })
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

fn table() -> Result<NameTable, mesh_dns::TableError> {
    let ip = |s: &str| s.parse::<IpAddr>().expect("literal address");
    let mut b = NameTable::builder();
    b.network(
        "bench",
        "bench",
        &["10.10.0.0/16".parse().expect("literal range")],
    )?;
    let mut web = ServiceRecords::vip("web", ip("10.10.0.2"));
    let mut db = ServiceRecords::dnsrr("db");
    for i in 1..=3u8 {
        web = web.task(TaskRecord::replica(
            format!("web{i}"),
            u64::from(i),
            IpAddr::from([10, 10, 1, i]),
        ));
        db = db.task(TaskRecord::replica(
            format!("db{i}"),
            u64::from(i),
            IpAddr::from([10, 10, 2, i]),
        ));
    }
    b.service("bench", &web)?.service("bench", &db)?;
    Ok(b.build())
}
