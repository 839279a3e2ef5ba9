//! Node loss: a node ONLINE whose last contact is older than the loss window is LOST,
//! and each of its active runs fails with a reason naming the node and the silence.
//!
//! "Last contact" is the later of the stored `last_seen_at_ms` and the last sync that
//! *arrived* at this server (kept in memory, so a busy store cannot make a live node
//! look silent). Right after a control-plane restart the silence is the server's fault,
//! so nothing is lost until one loss window has passed (`grace_over`).

use gantry_types::node::NodeStatus;

use crate::human;

/// When `node` was last heard from: the stored heartbeat or a sync seen in memory.
pub fn last_heard(last_seen_at_ms: i64, last_contact_ms: Option<i64>) -> i64 {
    last_seen_at_ms.max(last_contact_ms.unwrap_or(0))
}

/// Whether a node with this status, last heard at `last_heard_ms`, is lost now.
pub fn is_lost(status: NodeStatus, last_heard_ms: i64, lost_before_ms: i64, grace_over: bool) -> bool {
    grace_over && status == NodeStatus::Online && last_heard_ms < lost_before_ms
}

/// The reason recorded on each active run of a lost node.
pub fn lost_run_reason(node_name: &str, silent_ms: i64) -> String {
    format!("node lost: {node_name} sent no heartbeat for {}", human(silent_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_online_node_is_lost_after_the_grace_period() {
        assert!(is_lost(NodeStatus::Online, 999, 1_000, true));
        assert!(!is_lost(NodeStatus::Online, 1_000, 1_000, true), "heard exactly at the cut-off");
        assert!(!is_lost(NodeStatus::Online, 0, 1_000, false), "no losses during the restart grace");
        assert!(!is_lost(NodeStatus::Lost, 0, 1_000, true), "already lost");
    }

    #[test]
    fn the_latest_contact_wins() {
        assert_eq!(last_heard(5, Some(9)), 9);
        assert_eq!(last_heard(5, None), 5);
        assert_eq!(lost_run_reason("gpu-1", 6_000), "node lost: gpu-1 sent no heartbeat for 6.0s");
    }
}
