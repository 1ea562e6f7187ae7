//! `mesh-gossip`: node-to-node gossip on 7946 (chitchat): membership, failure detection, and
//! the endpoint table (which task address and MAC live behind which node).
