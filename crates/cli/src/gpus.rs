//! `gantry gpus`: the GPU registry, i.e. the models (and the names for them) that a
//! job's `gpu_name` or `gpu_registry_uuid` may ask for.

use gantry_client::{Client, Credentials, query};
use gantry_types::gpu::GpuModel;
use gantry_types::list::{ListResponse, MAX_LIMIT};
use reqwest::Method;

use crate::output::{self, JsonFlag};

/// Lists every model, oldest first (the seeded catalogue's order, then additions).
pub async fn run(out: JsonFlag) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    let models = fetch_all(&client).await?;
    if out.json {
        return output::json(&models);
    }
    let mut t = output::table(&["UUID", "NAME", "VRAM GB", "VENDOR", "OFFICIAL", "ALSO MATCHES"]);
    for m in &models {
        t.add_row(vec![
            m.uuid.to_string(),
            m.name.clone(),
            m.vram_gb.to_string(),
            m.vendor.clone(),
            m.is_official.to_string(),
            m.aliases.join(", "),
        ]);
    }
    outln!("{t}")?;
    outln!(
        "{} model(s); a job names one with gpu_name (any of its names, any case) or gpu_registry_uuid",
        models.len()
    )?;
    Ok(())
}

/// Every page of `GET /v1/gpu-registry`.
async fn fetch_all(client: &Client) -> anyhow::Result<Vec<GpuModel>> {
    let mut all = Vec::new();
    for page in 1u64.. {
        let q = query(&[("sort", "created_at"), ("limit", &MAX_LIMIT.to_string()), ("page", &page.to_string())]);
        let resp: ListResponse<GpuModel> = client.send(Method::GET, "/v1/gpu-registry", &q, None).await?;
        let got = resp.data.len();
        all.extend(resp.data);
        if got == 0 || all.len() as u64 >= resp.total {
            break;
        }
    }
    Ok(all)
}
