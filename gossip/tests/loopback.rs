//! Three gossip nodes on loopback (no root needed): they join through seeds, share endpoints,
//! keep another cluster out, detect a killed node and take it back when it restarts.
//! The measured detection time is printed (`cargo test -p mesh-gossip -- --nocapture`).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mesh_gossip::{
    Gossip, GossipConfig, GossipKey, GossipKeyring, GossipView, NodeInfo, TaskEndpoint,
};
use tokio::sync::watch;

/// Upper bound for anything to happen: only there to end a hung test.
const LIMIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

fn config(node: &str, cluster: &str, port: u16, seeds: &[SocketAddr]) -> GossipConfig {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut c = GossipConfig::new(
        node,
        cluster,
        addr,
        NodeInfo {
            addr: addr.ip(),
            hostname: format!("host-{node}"),
        },
    );
    c.listen = addr;
    c.seeds = seeds.to_vec();
    c.keyring.set(
        GossipKeyring::new(vec![GossipKey {
            id: 1,
            key: [7; 32],
        }])
        .expect("a keyring"),
    );
    c
}

fn ep(task: &str, last: u8) -> TaskEndpoint {
    TaskEndpoint {
        task_id: task.into(),
        service_id: "svc".into(),
        network_id: "net1".into(),
        vni: 4097,
        ip: Ipv4Addr::new(10, 0, 0, last),
        mac: [0x02, 0x42, 10, 0, 0, last],
        draining: false,
    }
}

async fn wait_view(
    who: &str,
    rx: &mut watch::Receiver<GossipView>,
    what: &str,
    pred: impl FnMut(&GossipView) -> bool,
) -> GossipView {
    let found = match tokio::time::timeout(LIMIT, rx.wait_for(pred)).await {
        Ok(Ok(v)) => Some(v.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "{who}: no view where {what} within {LIMIT:?}; last view: {:#?}",
            *rx.borrow()
        )
    })
}

fn task_ids(view: &GossipView, node: &str) -> Vec<String> {
    view.endpoints
        .get(node)
        .map(|eps| eps.iter().map(|e| e.task_id.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_share_endpoints_detect_a_death_and_take_a_restart_back() {
    let ports = [free_port(), free_port(), free_port()];
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, *p)))
        .collect();
    let n1 = Gossip::start(config("n1", "c1", ports[0], &[]))
        .await
        .unwrap();
    let n2 = Gossip::start(config("n2", "c1", ports[1], &[addrs[0]]))
        .await
        .unwrap();
    let n3 = Gossip::start(config("n3", "c1", ports[2], &[]))
        .await
        .unwrap();
    // n3 learns of a peer only later, as a manager would tell it.
    n3.set_seeds([addrs[1]]);

    let all = ["n1", "n2", "n3"];
    let mut views = [n1.view(), n2.view(), n3.view()];
    for (i, rx) in views.iter_mut().enumerate() {
        let v = wait_view(all[i], rx, "all three are live", |v| {
            all.iter().all(|n| v.live.contains_key(*n))
        })
        .await;
        assert_eq!(v.live["n2"].hostname, "host-n2");
        assert!(v.dead.is_empty(), "{v:#?}");
    }

    n1.set_endpoints(&[ep("t1a", 2), ep("t1b", 3)])
        .await
        .unwrap();
    n2.set_endpoints(&[ep("t2a", 4)]).await.unwrap();
    n3.set_endpoints(&[ep("t3a", 5)]).await.unwrap();
    for (i, rx) in views.iter_mut().enumerate() {
        wait_view(all[i], rx, "every endpoint is known", |v| {
            task_ids(v, "n1") == ["t1a", "t1b"]
                && task_ids(v, "n2") == ["t2a"]
                && task_ids(v, "n3") == ["t3a"]
        })
        .await;
    }

    // A change replaces the set: t1a goes, t1c comes, t1b stays.
    n1.set_endpoints(&[ep("t1b", 3), ep("t1c", 6)])
        .await
        .unwrap();
    for (i, rx) in views.iter_mut().enumerate() {
        wait_view(all[i], rx, "n1's endpoints changed", |v| {
            task_ids(v, "n1") == ["t1b", "t1c"]
        })
        .await;
    }
    // A bad set is refused whole.
    let mut bad = ep("t1d", 7);
    bad.network_id = "a/b".into();
    let err = n1.set_endpoints(&[ep("t1e", 8), bad]).await.unwrap_err();
    assert!(err.to_string().contains("network id"), "{err}");

    // A node of another cluster, seeded with n1, never enters (and n1 never enters its view).
    let foreign = Gossip::start(config("x1", "c2", free_port(), &[addrs[0]]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, rx) in views.iter().enumerate() {
        let v = rx.borrow();
        assert!(
            !v.live.contains_key("x1") && !v.dead.contains("x1"),
            "{}: {v:#?}",
            all[i]
        );
        assert_eq!(task_ids(&v, "n1"), ["t1b", "t1c"], "{}", all[i]);
    }
    let fv = foreign.view().borrow().clone();
    assert_eq!(fv.live.keys().collect::<Vec<_>>(), ["x1"], "{fv:#?}");
    drop(foreign);

    // Kill n3 (no goodbye: chitchat has no leave message).
    let timeouts = n1.detection_timeouts().await;
    let killed = Instant::now();
    drop(n3);
    for (i, rx) in views.iter_mut().take(2).enumerate() {
        wait_view(all[i], rx, "n3 is dead without endpoints", |v| {
            v.dead.contains("n3") && !v.live.contains_key("n3") && !v.endpoints.contains_key("n3")
        })
        .await;
        eprintln!(
            "{} saw n3 dead after {:?} (its detection timeouts before: {timeouts:?})",
            all[i],
            killed.elapsed()
        );
    }

    // n3 restarts with the same node id (a new generation) and new endpoints.
    let n3 = Gossip::start(config("n3", "c1", ports[2], &[addrs[0]]))
        .await
        .unwrap();
    n3.set_endpoints(&[ep("t3b", 9)]).await.unwrap();
    views[2] = n3.view();
    for (i, rx) in views.iter_mut().enumerate() {
        let v = wait_view(all[i], rx, "n3 is back with its new endpoints only", |v| {
            all.iter().all(|n| v.live.contains_key(*n)) && task_ids(v, "n3") == ["t3b"]
        })
        .await;
        assert!(v.dead.is_empty(), "{}: {v:#?}", all[i]);
    }

    n3.shutdown().await.unwrap();
    n2.shutdown().await.unwrap();
    n1.shutdown().await.unwrap();
}
