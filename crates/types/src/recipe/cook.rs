//! Cooking: a recipe's template plus a cook body becomes a create-job body, which the
//! server then validates and submits exactly like `POST /v1/jobs`.
//!
//! Merge rules (upstream leaves them open, API.md §4.7; these are Gantry's):
//!
//! 1. **Top-level fields replace** the template's (`title`, `task`, `cpu_count`,
//!    `allowed_region_codes`, ...); `null` removes one (`"gpu_name": null`), so a cook
//!    can turn a BATCH template into a PERSISTENT job with
//!    `{"task": "PERSISTENT", "max_timeout_run_ms": null}`.
//! 2. **`parameters.parameters` merges key by key**: each key sent replaces the
//!    template's (`ports`, `volumes`, `allowed_ips` replace as whole lists), the others
//!    stay. `parameters.type` replaces.
//! 3. **`env` merges key by key**: variables sent are set, `null` removes one, the
//!    template's others stay.
//! 4. **Inputs** are applied last (see [`super::inputs`]), so an input wins over an
//!    override of the same variable. Upstream clients have no `inputs` field and set
//!    the same things through the override body (`parameters.parameters.sshkey`,
//!    `parameters.parameters.env.NAME`): an input whose target (`sshkey`, `image`,
//!    `tag`, `env.NAME`) the override sets to a non-empty value counts as supplied,
//!    so a required one is satisfied and an optional one's `default_value` does not
//!    overwrite the override.
//! 5. **Registry credentials stay with their image**: the template's `user`/`secret`
//!    are carried over only while the cooked job pulls the template's own `image`
//!    from its own `host`. A cook that changes either must bring its own
//!    credentials, so a public recipe cannot be used to pull other images from its
//!    owner's private registry.
//! 6. **The flattened shape** `{"parameters": {"env": {...}, "sshkey": "..."}}`
//!    (Docker parameters directly under `parameters`, which some upstream clients
//!    send to cook) is read as if it were under `parameters.parameters`; when both
//!    name the same key, `parameters.parameters` wins.
//!
//! `{}` (or no body) cooks the template as it is.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::inputs::resolve_inputs_over;
use super::{CookRecipeRequest, JobTemplate, RecipeInput};
use crate::error::FieldError;

/// The create-job body a cook produces (not yet validated as a job), or the fields
/// of the cook body that cannot be merged. `template` holds its secrets in clear.
pub fn cook_body(
    template: &JobTemplate,
    body: CookRecipeRequest,
    schema: &[RecipeInput],
) -> Result<Value, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut job = match serde_json::to_value(template) {
        Ok(Value::Object(m)) => m,
        _ => return Err(vec![FieldError::new("payload", "the recipe's template is not a JSON object")]),
    };
    let mut supplied_docker_keys = Vec::new();
    let mut overridden = BTreeSet::new();
    for (key, value) in body.overrides {
        if key == "parameters" {
            merge_parameters(&mut job, value, &mut supplied_docker_keys, &mut overridden, &mut errors);
        } else {
            job.insert(key, value);
        }
    }
    let inputs = resolve_inputs_over(schema, &body.inputs.unwrap_or_default(), &overridden);
    let docker = job.get_mut("parameters").and_then(|p| p.get_mut("parameters")).and_then(Value::as_object_mut);
    match (inputs, docker) {
        (Ok(values), Some(docker)) => {
            for (target, text) in values {
                apply_input(docker, &target, text);
            }
            keep_credentials_with_their_image(template, docker, &supplied_docker_keys);
        }
        (Err(e), _) => errors.extend(e),
        // A non-object was already reported by the merge.
        (Ok(_), None) => {}
    }
    if errors.is_empty() { Ok(Value::Object(job)) } else { Err(errors) }
}

fn merge_parameters(
    job: &mut Map<String, Value>,
    value: Value,
    supplied: &mut Vec<String>,
    overridden: &mut BTreeSet<String>,
    errors: &mut Vec<FieldError>,
) {
    let Value::Object(overrides) = value else {
        errors.push(FieldError::new("parameters", "must be an object: {\"parameters\": {...}}"));
        return;
    };
    let params = job.entry("parameters").or_insert_with(|| Value::Object(Map::new()));
    let Some(params) = params.as_object_mut() else { return };
    // Rule 6: Docker parameters sent directly under `parameters` come first, so the
    // proper `parameters.parameters` (applied after) wins on a clash.
    let mut groups: Vec<Map<String, Value>> = Vec::new();
    let mut flattened = Map::new();
    let mut nested = None;
    for (key, value) in overrides {
        if key == "parameters" {
            match value {
                Value::Object(docker) => nested = Some(docker),
                _ => errors.push(FieldError::new("parameters.parameters", "must be an object of Docker parameters")),
            }
        } else if DOCKER_KEYS.contains(&key.as_str()) {
            flattened.insert(key, value);
        } else {
            params.insert(key, value);
        }
    }
    groups.push(flattened);
    groups.extend(nested);
    let docker = params.entry("parameters").or_insert_with(|| Value::Object(Map::new()));
    let Some(docker) = docker.as_object_mut() else { return };
    for docker_overrides in groups {
        for (dkey, dvalue) in docker_overrides {
            supplied.push(dkey.clone());
            match (dkey.as_str(), dvalue) {
                ("env", Value::Object(vars)) => {
                    let env = docker.entry("env").or_insert_with(|| Value::Object(Map::new()));
                    if !env.is_object() {
                        *env = Value::Object(Map::new());
                    }
                    let env = env.as_object_mut().expect("made an object above");
                    for (name, v) in vars {
                        if v.is_null() {
                            env.remove(&name);
                        } else {
                            overridden.insert(format!("env.{name}"));
                            env.insert(name, v);
                        }
                    }
                }
                (_, Value::Null) => {
                    docker.remove(&dkey);
                }
                (_, v) => {
                    if v.as_str().is_some_and(|s| !s.is_empty()) {
                        overridden.insert(dkey.clone());
                    }
                    docker.insert(dkey, v);
                }
            }
        }
    }
}

/// The Docker parameters (API.md §4.1), recognised also directly under `parameters`.
const DOCKER_KEYS: [&str; 11] =
    ["image", "tag", "host", "user", "secret", "imagesrc", "sshkey", "allowed_ips", "ports", "env", "volumes"];

fn apply_input(docker: &mut Map<String, Value>, target: &str, text: String) {
    match target.strip_prefix("env.") {
        Some(var) => {
            let env = docker.entry("env").or_insert_with(|| Value::Object(Map::new()));
            if !env.is_object() {
                *env = Value::Object(Map::new());
            }
            env.as_object_mut().expect("made an object above").insert(var.to_string(), Value::String(text));
        }
        None => {
            docker.insert(target.to_string(), Value::String(text));
        }
    }
}

/// Rule 5 of the module docs.
fn keep_credentials_with_their_image(template: &JobTemplate, docker: &mut Map<String, Value>, supplied: &[String]) {
    let t = &template.parameters.parameters;
    let same = |key: &str, was: Option<&str>| docker.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) == was;
    if same("image", Some(t.image.as_str())) && same("host", t.host.as_deref()) {
        return;
    }
    for key in ["user", "secret"] {
        if !supplied.iter().any(|k| k == key) {
            docker.remove(key);
        }
    }
}
