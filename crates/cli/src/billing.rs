//! `gantry offers` and `gantry balance`: what compute costs, and what the configured
//! key's account has to pay with.

use clap::Args;
use gantry_client::{Credentials, query};
use gantry_types::list::MAX_LIMIT;
use gantry_types::money::format_usd;

use crate::output;

/// `gantry offers`.
#[derive(Args)]
pub struct OffersArgs {
    /// Only offers of this GPU model (any name or alias).
    #[arg(long)]
    gpu: Option<String>,
    /// At least this many free GPUs.
    #[arg(long)]
    gpus: Option<u32>,
    /// At least this many free cores.
    #[arg(long)]
    cpus: Option<u32>,
    /// Free VRAM per GPU, GB.
    #[arg(long)]
    min_vram_gb: Option<f64>,
    /// Free RAM, GB.
    #[arg(long)]
    min_ram_gb: Option<f64>,
    /// Comma list of region codes.
    #[arg(long)]
    regions: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Lists offers, cheapest first.
pub async fn offers(args: OffersArgs) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    let mut q = vec![("limit".to_string(), MAX_LIMIT.to_string())];
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            q.push((format!("filter[{k}]"), v));
        }
    };
    add("gpu_name", args.gpu);
    add("gpu_count", args.gpus.map(|n| n.to_string()));
    add("cpu_count", args.cpus.map(|n| n.to_string()));
    add("min_vram_gb", args.min_vram_gb.map(|n| n.to_string()));
    add("min_ram_gb", args.min_ram_gb.map(|n| n.to_string()));
    add("allowed_region_codes", args.regions);
    let resp = client.list_offers(&q).await?;
    if args.json {
        return output::json(&resp);
    }
    let mut t = output::table(&["REGION", "GPUS", "VRAM GB", "CORES", "RAM GB", "DISK GB", "NODES", "USD/HOUR"]);
    for o in &resp.data {
        let h = &o.hardware_summary;
        t.add_row(vec![
            o.region_code.clone().unwrap_or_else(|| "-".into()),
            h.gpu_model_label.clone(),
            if h.gpu_count == 0 { "-".into() } else { h.min_gpu_vram_gib.to_string() },
            h.cpu_cores.to_string(),
            h.ram_gib.to_string(),
            h.storage_gib.to_string(),
            o.availability.node_count.to_string(),
            format_usd(o.pricing.hourly_rate_micros),
        ]);
    }
    outln!("{t}")?;
    outln!(
        "{} of {} offer(s); a job pays for what it reserves (GPUs, cores, RAM) at these rates",
        resp.data.len(),
        resp.total
    )?;
    Ok(())
}

/// Shows the configured key's account balance and its latest ledger lines.
pub async fn balance(out: output::JsonFlag) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    let me = client.me().await?;
    let balance = client.balance(me.uuid).await?;
    if out.json {
        return output::json(&balance);
    }
    outln!(
        "available {} {} (posted {}, used by running jobs {})",
        format_usd(balance.available_balance_micros),
        balance.currency,
        format_usd(balance.posted_balance_micros),
        format_usd(balance.accrued_usage_micros)
    )?;
    let lines = client.list_ledger_transactions(&query(&[("limit", "10")])).await?;
    let mut t = output::table(&["WHEN", "KIND", "AMOUNT USD", "MEMO"]);
    for l in &lines.data {
        t.add_row(vec![
            l.created_at.to_rfc3339(),
            l.kind.as_str().to_string(),
            format_usd(l.amount_micros),
            l.memo.clone().unwrap_or_default(),
        ]);
    }
    outln!("{t}")?;
    outln!("latest {} of {} ledger line(s)", lines.data.len(), lines.total)?;
    Ok(())
}
