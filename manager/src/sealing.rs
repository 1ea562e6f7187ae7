//! Migration: a cluster made by a meshd that kept the CA key, the join token secrets, the
//! gossip keyring and registry logins in the clear in raft gets them sealed by its leader ([`seal_clear_values`],
//! once per term, as soon as it leads), with the data key (made then if the cluster had none).
//! The leader then snapshots and purges its log so that the entries that held them go too; the
//! other managers drop theirs at their next snapshot.

use std::time::Duration;

use mesh_api::now_millis;
use mesh_cluster::state::{ClusterInfo, ClusterState, Object, Op, Sealed, Tx};
use serde::Serialize;

use crate::datakey::DataKey;
use crate::manager::Manager;

/// How long the leader waits before trying again when it could not seal (no data key yet).
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// `value` sealed, if it is still clear.
fn seal_if_clear<T: Serialize>(value: &mut Sealed<T>, key: &DataKey) -> bool {
    match value {
        Sealed::Clear(v) => {
            *value = key.seal_value(v);
            true
        }
        Sealed::Closed { .. } => false,
    }
}

/// Seals the cluster's values still in the clear; true if there was one.
pub(crate) fn seal_cluster(c: &mut ClusterInfo, key: &DataKey) -> bool {
    let mut changed = seal_if_clear(&mut c.root_ca_key_pem, key);
    changed |= seal_if_clear(&mut c.worker_token_secret, key);
    changed |= seal_if_clear(&mut c.manager_token_secret, key);
    changed |= seal_if_clear(&mut c.retired_token_secrets, key);
    changed |= seal_if_clear(&mut c.gossip_keys, key);
    if let Some(u) = c.unlock_key.as_mut() {
        changed |= seal_if_clear(u, key);
    }
    changed
}

/// The writes that seal every value of `state` still in the clear, or None if none is.
pub(crate) fn sealing_tx(state: &ClusterState, key: &DataKey, now: u64) -> Option<Tx> {
    let mut ops = Vec::new();
    if let Some(c) = &state.cluster {
        let mut c = c.clone();
        if seal_cluster(&mut c, key) {
            ops.push(Op::Put(Object::Cluster(c)));
        }
    }
    for s in state.services.values() {
        if let Some(login) = s.registry_auth.as_ref().filter(|l| l.is_clear()) {
            let mut s = s.clone();
            let mut login = login.clone();
            seal_if_clear(&mut login, key);
            s.registry_auth = Some(login);
            ops.push(Op::Put(Object::Service(s)));
        }
    }
    (!ops.is_empty()).then_some(Tx { at: now, ops })
}

/// Does `state` hold a value in the clear that it should keep sealed?
fn has_clear_values(state: &ClusterState) -> bool {
    let cluster = state.cluster.as_ref().is_some_and(|c| {
        c.root_ca_key_pem.is_clear()
            || c.worker_token_secret.is_clear()
            || c.manager_token_secret.is_clear()
            || c.retired_token_secrets.is_clear()
            || c.gossip_keys.is_clear()
            || c.unlock_key.as_ref().is_some_and(Sealed::is_clear)
    });
    cluster
        || state
            .services
            .values()
            .any(|s| s.registry_auth.as_ref().is_some_and(Sealed::is_clear))
}

/// Leader loop (see [`Manager::spawn_while_leader`]): seals what an older meshd left clear.
pub(crate) async fn seal_clear_values(m: Manager) {
    loop {
        if !has_clear_values(&m.state()) {
            return;
        }
        let sealed = async {
            let key = m.data_key().await?;
            m.with_retries(|s| Ok(sealing_tx(s, &key, now_millis())))
                .await?;
            anyhow::Ok(())
        }
        .await;
        match sealed {
            Ok(()) => {
                tracing::info!("sealed the values an older meshd kept in the clear in raft");
                m.compact_log().await;
                return;
            }
            Err(e) => tracing::warn!("sealing the values kept in the clear in raft: {e:#}"),
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

impl Manager {
    /// Snapshots the state now and purges the log up to it (on this manager), so that entries
    /// written before a change (values then in the clear) leave the raft store.
    async fn compact_log(&self) {
        let raft = &self.inner.raft;
        let applied = self.applied().index;
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::warn!("snapshot after sealing: {e}");
            return;
        }
        let mut metrics = raft.metrics();
        let built = metrics.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied));
        if tokio::time::timeout(Duration::from_secs(10), built)
            .await
            .is_err()
        {
            tracing::warn!("no snapshot within 10s after sealing; the log is purged later");
            return;
        }
        if let Err(e) = raft.trigger().purge_log(applied).await {
            tracing::warn!("purging the log after sealing: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;
    use mesh_cluster::state::NodeDescription;

    use super::*;

    #[test]
    fn clear_values_are_sealed_once_and_sealed_ones_left_alone() {
        // What an older meshd wrote: the cluster's secrets as plain strings.
        let tx = crate::handlers::swarm::bootstrap_tx(
            &Id::from("c1"),
            &Id::from("n1"),
            &("CERT".into(), "-----BEGIN PRIVATE KEY-----K".into()),
            NodeDescription::default(),
            std::net::Ipv4Addr::LOCALHOST,
            2377,
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
        );
        let mut state = ClusterState::default();
        state.apply(&tx, 1).unwrap();
        let mut json = serde_json::to_value(&state).unwrap();
        let cluster = &mut json["cluster"];
        assert_eq!(cluster["root_ca_key_pem"], "-----BEGIN PRIVATE KEY-----K");
        cluster["retired_token_secrets"] = serde_json::json!(["0ld"]);
        let worker = cluster["worker_token_secret"].as_str().unwrap().to_owned();
        let mut state: ClusterState = serde_json::from_value(json).unwrap();

        let key = DataKey::random();
        assert!(has_clear_values(&state));
        let tx = sealing_tx(&state, &key, 1).unwrap();
        state.apply(&tx, 2).unwrap();
        assert!(!has_clear_values(&state));
        assert!(sealing_tx(&state, &key, 2).is_none());
        let c = state.cluster.as_ref().unwrap();
        assert_eq!(c.id, Id::from("c1"));
        assert_eq!(
            key.open_value(&c.root_ca_key_pem).unwrap(),
            "-----BEGIN PRIVATE KEY-----K"
        );
        assert_eq!(key.open_value(&c.worker_token_secret).unwrap(), worker);
        assert_eq!(key.open_value(&c.retired_token_secrets).unwrap(), ["0ld"]);
        let text = serde_json::to_string(&state).unwrap();
        for clear in ["PRIVATE", &worker, "0ld"] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
    }
}
