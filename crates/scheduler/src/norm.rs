//! Rules shared by the planner and [`crate::explain`], so both agree on what "fits" means.

use crate::{GpuView, NodeView};

/// A requirement amount as the planner uses it: `None` when it is not a finite number (the
/// job is malformed and never placed), 0 when negative.
pub(crate) fn amount(x: f64) -> Option<f64> {
    if !x.is_finite() {
        None
    } else if x <= 0.0 {
        Some(0.0)
    } else {
        Some(x)
    }
}

/// Whether `free` capacity covers a (normalized) requirement. A requirement of 0 always fits,
/// whatever the view says is free.
pub(crate) fn covers(free: f64, need: f64) -> bool {
    need <= 0.0 || free >= need
}

/// The distinct nodes of a snapshot, sorted by id: of several views with the same id, the
/// first in input order.
pub(crate) fn distinct_nodes(nodes: &[NodeView]) -> Vec<&NodeView> {
    let mut sorted: Vec<&NodeView> = nodes.iter().collect();
    // Stable sort: among equal ids the first in input order stays first.
    sorted.sort_by_key(|n| n.id);
    sorted.dedup_by_key(|n| n.id);
    sorted
}

/// The distinct GPUs of a node, sorted by index: of several with the same index, the first.
pub(crate) fn distinct_gpus(gpus: &[GpuView]) -> Vec<&GpuView> {
    let mut sorted: Vec<&GpuView> = gpus.iter().collect();
    sorted.sort_by_key(|g| g.index);
    sorted.dedup_by_key(|g| g.index);
    sorted
}
