//! Gantry's official recipes, written into every store at server start (missing
//! uuids only: an operator's change to one, e.g. a real image instead of the
//! placeholder, is never overwritten; to retire one, archive it rather than delete
//! it, since a deleted seed comes back at the next start).
//!
//! **The uuids are fixed literals** (clients and docs name recipes by uuid): never
//! regenerate them; a new recipe gets a new hand-written literal.
//!
//! **The images are placeholders**, except the llama.cpp server's, which keeps
//! upstream's uuid and the public image upstream documents for it, so a client that
//! cooks upstream's recipe by uuid gets the same service. Gantry cannot know which
//! registry a deployment can pull from, so the other seeds run `busybox` (small, everywhere, and what the
//! simulated nodes' docs use). Operators replace the image with `PATCH
//! /v1/job-recipes/{uuid}` as an admin: for the dev box, an image whose entrypoint
//! writes `SSH_PUBKEY` to `authorized_keys` and starts `sshd`; for the HTTP service,
//! one that serves on 8080 and checks `CONTAINER_ACCESS_TOKEN`.

use serde_json::{Value, json};

use super::inputs::{RecipeInput, RecipeInputRequest, validate_input_schema};
use super::{JobTemplate, payload};
use crate::error::FieldError;

/// `created_at` of seed `i` is this plus `i` ms (2025-01-01T00:00:00Z), so lists
/// order the seeds as written here on every server, before anyone's recipes.
pub const SEEDED_AT_MS: i64 = 1_735_689_600_000;

/// The SSH dev box.
pub const DEV_BOX_UUID: &str = "0198ac1d-7000-7000-8000-000000000001";
/// The BATCH "hello GPU".
pub const HELLO_GPU_UUID: &str = "0198ac1d-7000-7000-8000-000000000002";
/// The HTTP service behind the access token.
pub const HTTP_SERVICE_UUID: &str = "0198ac1d-7000-7000-8000-000000000003";
/// The llama.cpp server, under **upstream's** official recipe uuid (clients hard-code it).
pub const LLAMA_CPP_UUID: &str = "01a0114e-e7f8-4e76-a07a-f09fca41e2be";
/// The image upstream documents for its llama.cpp server (OTOY's, with SSH, nginx in
/// front of llama-server on the published port, and the container access token).
pub const LLAMA_CPP_IMAGE: &str = "dispersednetwork/llama.cpp_accesstoken_preload";

/// One seeded recipe, as a create-recipe body would carry it.
#[derive(Clone, Debug)]
pub struct SeedRecipe {
    /// Fixed uuid literal.
    pub uuid: &'static str,
    /// Display name.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// A create-job body.
    pub payload: Value,
    /// `input_schema` items.
    pub input_schema: Value,
    /// How to use it.
    pub quickstart_md: &'static str,
}

impl SeedRecipe {
    /// The template and inputs, checked like any recipe's.
    pub fn validated(&self) -> Result<(JobTemplate, Vec<RecipeInput>), Vec<FieldError>> {
        let template = payload(self.payload.clone())?;
        let items: Vec<RecipeInputRequest> =
            crate::validate::from_json(self.input_schema.clone()).map_err(|e| vec![e])?;
        Ok((template, validate_input_schema(items)?))
    }
}

fn docker(image: &str, extra: Value) -> Value {
    let mut p = json!({"image": image, "tag": "stable"});
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    json!({"type": "docker", "parameters": p})
}

/// The official recipes.
pub fn seeded_recipes() -> Vec<SeedRecipe> {
    vec![
        SeedRecipe {
            uuid: DEV_BOX_UUID,
            name: "SSH dev box",
            description: "A persistent GPU container you log into with SSH. The image is a placeholder: \
                          operators replace it with one that starts sshd with SSH_PUBKEY.",
            payload: json!({
                "title": "SSH dev box", "task": "PERSISTENT", "max_timeout_run_ms": null,
                "cpu_count": 4, "gpu_count": 1, "min_ram_gb": 16, "min_storage_gb": 50,
                "max_timeout_start_ms": 1_800_000,
                "parameters": docker("busybox", json!({"ports": [22], "allowed_ips": ["0.0.0.0/0"]})),
            }),
            input_schema: json!([{
                "key": "sshkey", "type": "string", "label": "SSH public key", "required": true,
                "description": "Your public key (the container receives it as SSH_PUBKEY)",
                "placeholder": "ssh-ed25519 AAAA... you@host", "target": "sshkey",
            }]),
            quickstart_md: "Cook it with your key: `gantry recipes cook 0198ac1d-7000-7000-8000-000000000001 \
                            --input sshkey=\"$(cat ~/.ssh/id_ed25519.pub)\"`. When the run is RUNNING, \
                            its `node_urls` entry `ssh` gives the host and port: `ssh -p PORT USER@HOST` \
                            (the user is the image's). Cancel the job when done.",
        },
        SeedRecipe {
            uuid: HELLO_GPU_UUID,
            name: "Hello GPU",
            description: "A one-GPU BATCH job that prints a greeting and exits: the smallest end-to-end check \
                          of a deployment. The image is a placeholder operators may replace (e.g. with one \
                          that runs nvidia-smi).",
            payload: json!({
                "title": "hello GPU", "task": "BATCH", "max_timeout_run_ms": 600_000,
                "cpu_count": 1, "gpu_count": 1,
                "parameters": docker("busybox", json!({"env": {"MESSAGE": "hello GPU"}})),
            }),
            input_schema: json!([{
                "key": "message", "type": "string", "label": "Greeting", "required": false,
                "default_value": "hello GPU", "target": "env.MESSAGE",
            }]),
            quickstart_md: "`gantry recipes cook 0198ac1d-7000-7000-8000-000000000002`, then `gantry jobs get \
                            JOB_UUID` until it is COMPLETED; the run's logs (GET /v1/job-runs/{uuid}) hold \
                            the output.",
        },
        SeedRecipe {
            uuid: HTTP_SERVICE_UUID,
            name: "HTTP service behind the access token",
            description: "A persistent one-GPU service publishing port 8080. The container receives \
                          CONTAINER_ACCESS_TOKEN and should require it (HTTP Basic user `duser` by upstream \
                          convention); the token is in the run's container_access_tokens. The image is a \
                          placeholder: cook with your own (`--input image=...`).",
            payload: json!({
                "title": "HTTP service", "task": "PERSISTENT", "max_timeout_run_ms": null,
                "cpu_count": 2, "gpu_count": 1, "min_ram_gb": 8,
                "parameters": docker("busybox", json!({
                    "ports": [8080], "allowed_ips": ["0.0.0.0/0"], "env": {"PORT": "8080"}
                })),
            }),
            input_schema: json!([
                {"key": "image", "type": "string", "label": "Image", "required": false,
                 "description": "The image serving HTTP on port 8080", "placeholder": "ghcr.io/you/app",
                 "target": "image"},
                {"key": "tag", "type": "string", "label": "Tag", "required": false, "placeholder": "latest",
                 "target": "tag"},
            ]),
            quickstart_md: "Cook with your image: `gantry recipes cook 0198ac1d-7000-7000-8000-000000000003 \
                            --input image=ghcr.io/you/app --input tag=v1`. When RUNNING, the run's \
                            `node_urls` entry `8080` gives the address; send `Authorization: Basic \
                            base64(duser:TOKEN)` with the run's container access token.",
        },
        SeedRecipe {
            uuid: LLAMA_CPP_UUID,
            name: "llama.cpp server",
            description: "A persistent one-GPU llama.cpp server (OpenAI-compatible HTTP API) with SSH, from the \
                          image upstream documents. The model is a GGUF repository on Hugging Face, downloaded \
                          at start; the HTTP port requires the container access token (HTTP Basic, user duser).",
            payload: json!({
                "title": "llama.cpp server", "task": "PERSISTENT", "max_timeout_run_ms": null,
                "cpu_count": 4, "gpu_count": 1, "min_vram_gb": 8, "min_ram_gb": 16, "min_storage_gb": 50,
                "max_timeout_start_ms": 1_800_000,
                "parameters": {"type": "docker", "parameters": {
                    "image": LLAMA_CPP_IMAGE, "tag": "latest", "ports": [22, 5000],
                    "allowed_ips": ["0.0.0.0/0"],
                    "env": {"LLAMA_ARG_PORT": "8080", "LLAMA_ARG_HF_REPO": "ggml-org/gemma-3-1b-it-GGUF"},
                }},
            }),
            input_schema: json!([
                {"key": "model", "type": "string", "label": "Model (Hugging Face GGUF repository)",
                 "required": false, "default_value": "ggml-org/gemma-3-1b-it-GGUF",
                 "description": "A GGUF model repository, optionally with :QUANT (llama.cpp's -hf)",
                 "placeholder": "ggml-org/gemma-3-4b-it-GGUF:Q4_K_M", "target": "env.LLAMA_ARG_HF_REPO"},
                {"key": "sshkey", "type": "string", "label": "SSH public key", "required": false,
                 "description": "Optional: log in as duser on the ssh node_url",
                 "placeholder": "ssh-ed25519 AAAA... you@host", "target": "sshkey"},
            ]),
            quickstart_md: "Cook it (the model is optional): `gantry recipes cook 01a0114e-e7f8-4e76-a07a-f09fca41e2be \
                            --input model=ggml-org/gemma-3-4b-it-GGUF`. When the run is RUNNING, its `node_urls` \
                            entry `5000` is the server: send `Authorization: Basic base64(duser:TOKEN)` with the \
                            run's container access token, e.g. `curl -u duser:TOKEN http://HOST:PORT/v1/models`; \
                            `ssh` is the shell (`ssh -p PORT duser@HOST`).",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_is_a_valid_recipe_with_a_unique_fixed_uuid() {
        let seeds = seeded_recipes();
        let mut uuids: Vec<&str> = seeds.iter().map(|s| s.uuid).collect();
        uuids.sort_unstable();
        uuids.dedup();
        assert_eq!(uuids.len(), seeds.len());
        for s in &seeds {
            assert!(s.uuid.parse::<crate::RecipeId>().is_ok(), "{}", s.uuid);
            let (template, inputs) = s.validated().unwrap_or_else(|e| panic!("{}: {e:?}", s.name));
            let image = if s.uuid == LLAMA_CPP_UUID { LLAMA_CPP_IMAGE } else { "busybox" };
            assert_eq!(template.parameters.parameters.image, image, "{}", s.name);
            assert!(!inputs.is_empty(), "{}", s.name);
        }
    }
}
