//! `gantry agent --print-inventory [--json]`: what the agent found, for an operator checking a
//! node before it joins.

use std::fmt::Write as _;

use crate::inventory::NodeDescription;

/// A human-readable table of the node's facts, followed by the notes (e.g. why no GPUs).
pub fn print_inventory(desc: &NodeDescription, notes: &[String]) -> String {
    let inv = &desc.inventory;
    let mut out = String::new();
    let _ = writeln!(out, "Region:  {}", desc.region.as_deref().unwrap_or("(none)"));
    let labels: Vec<String> = desc.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "Labels:  {}", if labels.is_empty() { "(none)".into() } else { labels.join(", ") });
    for cpu in &inv.cpus {
        let _ = writeln!(out, "CPU:     {} ({} cores)", cpu.name, cpu.num_cores);
    }
    let _ = writeln!(out, "RAM:     {:.1} GB", inv.ram_gb);
    let _ = writeln!(out, "Disk:    {:.1} GB free", inv.storage_gb);
    let _ = writeln!(out, "GPUs:    {}", inv.gpus.len());
    if !inv.gpus.is_empty() {
        let name_width = inv.gpus.iter().map(|g| g.name.len()).max().unwrap_or(0).max("NAME".len());
        let uuid_width = inv.gpus.iter().map(|g| g.uuid.len()).max().unwrap_or(0).max("UUID".len());
        let _ = writeln!(out, "  {:<5}  {:<name_width$}  {:>9}  {:<uuid_width$}", "INDEX", "NAME", "VRAM", "UUID");
        for g in &inv.gpus {
            let vram = format!("{:.1} GB", g.vram_gb);
            let _ = writeln!(out, "  {:<5}  {:<name_width$}  {:>9}  {:<uuid_width$}", g.index, g.name, vram, g.uuid);
        }
    }
    for note in notes {
        let _ = writeln!(out, "Note:    {note}");
    }
    out
}

/// The same as JSON: `{"inventory": NodeInventory, "region": .., "labels": {..}, "notes": [..]}`
/// (the inventory exactly as the agent registers it).
pub fn inventory_json(desc: &NodeDescription, notes: &[String]) -> serde_json::Value {
    serde_json::json!({
        "inventory": desc.inventory,
        "region": desc.region,
        "labels": desc.labels,
        "notes": notes,
    })
}

/// Discovers the host with `options` and prints it: what `gantry agent --print-inventory
/// [--json]` shows. The error is a configuration error (see [`super::HostProbe::discover`]).
pub fn inventory_report(options: &super::HostOptions, json: bool) -> Result<String, String> {
    let probe = super::HostProbe::discover(options)?;
    Ok(if json {
        let mut text = serde_json::to_string_pretty(&inventory_json(probe.description(), probe.notes()))
            .expect("inventory serialises");
        text.push('\n');
        text
    } else {
        print_inventory(probe.description(), probe.notes())
    })
}
