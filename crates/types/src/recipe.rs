//! Job recipes (API.md §4.6, §4.7): named job templates that anyone allowed to see
//! them "cooks" into a job with a few overrides and inputs.
//!
//! * **The object** follows upstream's recipe page: `{object: "job_recipe", uuid, name,
//!   description, visibility, payload, is_official, last_used_at, quickstart_md,
//!   input_schema, thumbnail_url, is_owner, forked_from_recipe_uuid, created_at,
//!   updated_at}`.
//! * **The payload** is a create-job body that is valid by itself (checked with the
//!   same [`crate::validate::validate_create_job`] as `POST /v1/jobs` when the recipe
//!   is written), stored normalised as a [`JobTemplate`]: defaults filled in, empty
//!   strings dropped. So `{}` always cooks, and a broken template is refused when it
//!   is written rather than when someone cooks it.
//! * **Inputs** ([`inputs`]) are upstream's `input_schema` items plus Gantry's `target`
//!   (where the value lands: an env variable, `sshkey`, `image` or `tag`).
//! * **Cooking** ([`cook`]) merges the cook body over the template; the server then
//!   validates the result exactly like `POST /v1/jobs`.
//! * **Seeds** ([`catalogue`]): Gantry's official recipes, with fixed uuids.

pub mod catalogue;
pub mod cook;
pub mod inputs;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::RecipeId;
use crate::job::{JobParameters, JobSpec, JobTask};
use crate::list::{self, Range};
use crate::num;
use crate::time::Timestamp;

pub use self::inputs::{InputOption, InputType, RecipeInput, RecipeInputRequest};

/// The `object` of a recipe.
pub const OBJECT: &str = "job_recipe";

/// Longest recipe name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest `description`, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 16 * 1024;

/// Longest `quickstart_md`, in bytes.
pub const MAX_QUICKSTART_LEN: usize = 64 * 1024;

/// Longest `thumbnail_url`, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Who may see a recipe. Upstream shows `ARCHIVED`; `PRIVATE` and `PUBLIC` are the
/// values its console implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecipeVisibility {
    /// Only the owner sees and cooks it.
    Private,
    /// Everyone sees and cooks it.
    Public,
    /// Retired: only the owner sees and cooks it, and it is never listed to others
    /// (even when official).
    Archived,
}

impl RecipeVisibility {
    /// Every value.
    pub const ALL: [Self; 3] = [Self::Private, Self::Public, Self::Archived];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "PRIVATE",
            Self::Public => "PUBLIC",
            Self::Archived => "ARCHIVED",
        }
    }

    /// Parses the wire spelling, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(text))
    }
}

/// Whether a recipe with this owner, visibility and official flag is visible to
/// `viewer` (`None`: an operator, who sees everything). The store applies the same
/// rule in SQL; this is its statement for people and the application layer.
pub fn is_visible(
    owner: Option<crate::AccountId>,
    visibility: RecipeVisibility,
    is_official: bool,
    viewer: Option<crate::AccountId>,
) -> bool {
    match viewer {
        None => true,
        Some(v) if owner == Some(v) => true,
        Some(_) => visibility != RecipeVisibility::Archived && (visibility == RecipeVisibility::Public || is_official),
    }
}

/// A job template: a create-job body (API.md §4.2) with upstream's defaults filled
/// in, exactly what a recipe's `payload` holds and returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobTemplate {
    /// Job title.
    pub title: String,
    /// BATCH or PERSISTENT.
    pub task: JobTask,
    /// What to run (registry secrets are returned as `********`).
    pub parameters: JobParameters,
    /// Run timeout, ms (null for PERSISTENT).
    pub max_timeout_run_ms: Option<i64>,
    /// CPU cores.
    pub cpu_count: i64,
    /// GPUs.
    pub gpu_count: i64,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// GPU model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_name: Option<String>,
    /// Exact GPU model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_registry_uuid: Option<String>,
    /// Gang size.
    pub max_node_count: i64,
    /// Retries.
    pub max_retry_count: i64,
    /// Assignment timeout, ms.
    pub max_timeout_assign_ms: i64,
    /// Start timeout, ms.
    pub max_timeout_start_ms: i64,
    /// RAM, GB.
    #[serde(serialize_with = "num::gb")]
    pub min_ram_gb: f64,
    /// Storage, GB.
    #[serde(serialize_with = "num::gb")]
    pub min_storage_gb: f64,
    /// VRAM per GPU, GB.
    #[serde(serialize_with = "num::gb")]
    pub min_vram_gb: f64,
    /// Regions; empty = anywhere.
    #[serde(default)]
    pub allowed_region_codes: Vec<String>,
}

impl From<JobSpec> for JobTemplate {
    fn from(s: JobSpec) -> Self {
        Self {
            title: s.title,
            task: s.task,
            parameters: s.parameters,
            max_timeout_run_ms: s.max_timeout_run_ms,
            cpu_count: s.cpu_count,
            gpu_count: s.gpu_count,
            description: s.description,
            gpu_name: s.gpu_name,
            gpu_registry_uuid: s.gpu_registry_uuid,
            max_node_count: s.max_node_count,
            max_retry_count: s.max_retry_count,
            max_timeout_assign_ms: s.max_timeout_assign_ms,
            max_timeout_start_ms: s.max_timeout_start_ms,
            min_ram_gb: s.min_ram_gb,
            min_storage_gb: s.min_storage_gb,
            min_vram_gb: s.min_vram_gb,
            allowed_region_codes: s.allowed_region_codes,
        }
    }
}

/// The recipe object (API.md §4.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRecipe {
    /// Always `job_recipe`.
    pub object: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// PRIVATE, PUBLIC or ARCHIVED.
    pub visibility: RecipeVisibility,
    /// The job template cooked into a job.
    pub payload: JobTemplate,
    /// Curated by the operators (Gantry's seeded recipes, or marked by an admin).
    pub is_official: bool,
    /// When it was last cooked.
    pub last_used_at: Option<Timestamp>,
    /// The recipe's ID.
    pub uuid: RecipeId,
    /// How to use the job once it runs (Markdown).
    pub quickstart_md: Option<String>,
    /// What a cook may (or must) supply in `inputs`.
    pub input_schema: Vec<RecipeInput>,
    /// A picture for the recipe.
    pub thumbnail_url: Option<String>,
    /// Whether the caller's account owns it (and so may change it).
    pub is_owner: bool,
    /// The recipe this one was forked from.
    pub forked_from_recipe_uuid: Option<RecipeId>,
}

/// `POST /v1/job-recipes` body, and (every field optional, absent = unchanged)
/// `PATCH /v1/job-recipes/{uuid}`. Unknown fields are ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RecipeRequest {
    /// Required on create: 1-128 bytes.
    pub name: Option<String>,
    /// Free text; `""` clears it.
    pub description: Option<String>,
    /// PRIVATE (the default), PUBLIC or ARCHIVED.
    pub visibility: Option<String>,
    /// Admins only (`job_recipes.create.all` / `job_recipes.update.all`).
    pub is_official: Option<bool>,
    /// Required on create: a valid create-job body (API.md §4.2). Replaced whole on update.
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
    /// Inputs a cook may supply; replaced whole on update.
    pub input_schema: Option<Vec<RecipeInputRequest>>,
    /// Markdown; `""` clears it.
    pub quickstart_md: Option<String>,
    /// An http(s) URL; `""` clears it.
    pub thumbnail_url: Option<String>,
    /// Gantry addition, admins only on create (`job_recipes.create.all`): the new
    /// recipe's uuid, so an operator can publish a recipe under the uuid clients
    /// hard-code (e.g. an upstream official recipe's). Default: a fresh UUIDv7. A PATCH
    /// may send it only unchanged.
    pub uuid: Option<String>,
}

/// `POST /v1/job-recipes/{uuid}/fork` body (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ForkRecipeRequest {
    /// The fork's name; default the source's.
    pub name: Option<String>,
    /// The fork's visibility; default PRIVATE.
    pub visibility: Option<String>,
}

/// `POST /v1/job-recipes/{uuid}/cook` body (API.md §4.7): any create-job field
/// overrides the template's (top-level fields replace, `parameters.parameters` and
/// its `env` merge key by key), plus Gantry's `inputs`. `{}` cooks the template as is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CookRecipeRequest {
    /// Create-job fields (title, task, cpu_count, parameters, ...), as in `POST /v1/jobs`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub overrides: serde_json::Map<String, serde_json::Value>,
    /// Values for the recipe's `input_schema`, by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A validated create or update: what the server stores (the payload still needs
/// the GPU registry's check and secret encryption).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecipeChanges {
    /// New name.
    pub name: Option<String>,
    /// New description (`Some(None)` clears).
    pub description: Option<Option<String>>,
    /// New visibility.
    pub visibility: Option<RecipeVisibility>,
    /// New official flag (the caller's right to set it is the server's check).
    pub is_official: Option<bool>,
    /// New payload.
    pub payload: Option<JobTemplate>,
    /// New input schema.
    pub input_schema: Option<Vec<RecipeInput>>,
    /// New quickstart (`Some(None)` clears).
    pub quickstart_md: Option<Option<String>>,
    /// New thumbnail (`Some(None)` clears).
    pub thumbnail_url: Option<Option<String>>,
}

/// Checks a recipe body. `creating` makes `name` and `payload` required. Payload
/// errors are named under `payload.` (`payload.parameters.parameters.image`).
pub fn validate_recipe_request(req: RecipeRequest, creating: bool) -> Result<RecipeChanges, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = RecipeChanges { is_official: req.is_official, ..Default::default() };
    match req.name.map(|n| n.trim().to_string()) {
        None if creating => errors.push(FieldError::new("name", "is required")),
        None => {}
        Some(n) if n.is_empty() => errors.push(FieldError::new("name", "must not be blank")),
        Some(n) if n.len() > MAX_NAME_LEN => {
            errors.push(FieldError::new("name", format!("must be at most {MAX_NAME_LEN} bytes")))
        }
        Some(n) => out.name = Some(n),
    }
    out.description = text(&mut errors, "description", req.description, MAX_DESCRIPTION_LEN);
    out.quickstart_md = text(&mut errors, "quickstart_md", req.quickstart_md, MAX_QUICKSTART_LEN);
    out.thumbnail_url = text(&mut errors, "thumbnail_url", req.thumbnail_url, MAX_URL_LEN);
    if let Some(Some(url)) = &out.thumbnail_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        errors.push(FieldError::new("thumbnail_url", format!("must be an http(s) URL, got {url:?}")));
    }
    if let Some(v) = &req.visibility {
        match RecipeVisibility::parse(v) {
            Some(v) => out.visibility = Some(v),
            None => {
                errors.push(FieldError::new("visibility", format!("must be PRIVATE, PUBLIC or ARCHIVED, got {v:?}")))
            }
        }
    }
    match req.payload {
        None if creating => {
            errors.push(FieldError::new("payload", "is required: a create-job body (title, task, parameters, ...)"))
        }
        None => {}
        Some(value) => match payload(value) {
            Ok(t) => out.payload = Some(t),
            Err(e) => errors.extend(e),
        },
    }
    if let Some(schema) = req.input_schema {
        match inputs::validate_input_schema(schema) {
            Ok(s) => out.input_schema = Some(s),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Checks a payload exactly as `POST /v1/jobs` checks a body, naming fields under `payload.`.
pub fn payload(value: serde_json::Value) -> Result<JobTemplate, Vec<FieldError>> {
    let prefix = |e: FieldError| FieldError::new(format!("payload.{}", e.field), e.message);
    if !value.is_object() {
        return Err(vec![FieldError::new("payload", "must be a JSON object: a create-job body")]);
    }
    let req = crate::validate::from_json(value).map_err(|e| vec![prefix(e)])?;
    crate::validate::validate_create_job(req).map(JobTemplate::from).map_err(|e| e.into_iter().map(prefix).collect())
}

/// An optional text field: absent = unchanged, `""` = cleared.
fn text(errors: &mut Vec<FieldError>, field: &str, value: Option<String>, max: usize) -> Option<Option<String>> {
    let v = value?;
    if v.len() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} bytes")));
    }
    Some(Some(v).filter(|s| !s.is_empty()))
}

/// `GET /v1/job-recipes` filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecipeFilter {
    /// `filter[is_official]`.
    pub is_official: Option<bool>,
    /// `filter[visibility]` (comma list).
    pub visibilities: Vec<RecipeVisibility>,
    /// `filter[is_owner]`: true = only the caller's, false = only others'.
    pub is_owner: Option<bool>,
    /// `filter[uuid]` (comma list).
    pub uuids: Vec<RecipeId>,
    /// `filter[forked_from_recipe_uuid]` (comma list).
    pub forked_from: Vec<RecipeId>,
    /// `filter[created_at]`, epoch ms.
    pub created_at: Option<Range<i64>>,
}

/// Parses the `GET /v1/job-recipes` filters.
pub fn parse_recipe_filter(pairs: &[(String, String)]) -> Result<RecipeFilter, Vec<FieldError>> {
    const KNOWN: &[&str] = &["is_official", "visibility", "is_owner", "uuid", "forked_from_recipe_uuid", "created_at"];
    let mut errors = Vec::new();
    let mut f = RecipeFilter::default();
    let items: Vec<(String, String)> =
        list::filters(pairs, KNOWN, &mut errors).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in &items {
        let (key, value, e) = (key.as_str(), value.as_str(), &mut errors);
        let id = |s: &str| s.parse::<RecipeId>().ok();
        match key {
            "is_official" => f.is_official = list::boolean(key, value, e),
            "is_owner" => f.is_owner = list::boolean(key, value, e),
            "visibility" => {
                f.visibilities.extend(list::list(key, value, e, RecipeVisibility::parse, "PRIVATE, PUBLIC or ARCHIVED"))
            }
            "uuid" => f.uuids.extend(list::list(key, value, e, id, "a UUID")),
            "forked_from_recipe_uuid" => f.forked_from.extend(list::list(key, value, e, id, "a UUID")),
            _ => f.created_at = list::range(key, value, e, |s| Timestamp::parse(s).map(|t| t.0), false),
        }
    }
    if errors.is_empty() { Ok(f) } else { Err(errors) }
}

#[cfg(test)]
mod tests;
