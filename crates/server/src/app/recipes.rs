//! Job recipes: list, read, create, update, delete, fork, cook, and the seeded
//! official recipes.
//!
//! * **Who sees what** is the store's rule (`gantry_store::RecipeViewer`): a recipe
//!   the caller may not see is a 404, like another account's job. A recipe the caller
//!   sees but does not own (someone's PUBLIC one, an official seed) is a 403 on
//!   update and delete, which says to fork it instead.
//! * **`is_official`** is the operators' word: setting or changing it needs the
//!   `.all` scope (the admin preset); anyone else gets a 403 naming the field.
//! * **Secrets**: the payload's registry secrets are encrypted before the store sees
//!   them and shown as [`REDACTED`] in every response. An update that sends
//!   `"********"` back keeps the stored secret (so a fetched payload can be edited and
//!   sent back). A fork never inherits secrets (the forker would otherwise own, and
//!   could repoint, someone else's registry credentials), and a cook keeps them only
//!   for the template's own image (`gantry_types::recipe::cook`).
//! * **Cooking** merges the body over the template and hands the result to
//!   [`crate::app::jobs::submit`], the same function `POST /v1/jobs` calls, so a
//!   cooked job is validated exactly like a submitted one.
//! * **Updates** are compare-and-set on `updated_at`, retried on a race, so two
//!   concurrent PATCHes of different fields never lose one.

use gantry_store::{Page, RecipeRecord, RecipeViewer, StoreError};
use gantry_types::job::{CreateJobRequest, Job};
use gantry_types::list::Paging;
use gantry_types::recipe::catalogue::{SEEDED_AT_MS, seeded_recipes};
use gantry_types::recipe::cook::cook_body;
use gantry_types::recipe::{
    CookRecipeRequest, ForkRecipeRequest, JobRecipe, JobTemplate, OBJECT, RecipeChanges, RecipeFilter, RecipeRequest,
    RecipeVisibility, validate_recipe_request,
};
use gantry_types::{AccountId, FieldError, RecipeId, Timestamp};

use crate::app::error::{AppError, chain};
use crate::app::jobs::REDACTED;
use crate::state::{AppState, now_ms};

/// What a caller may do with recipes, from their key's scopes.
#[derive(Clone, Copy, Debug)]
pub struct RecipeCaller {
    /// Who reads (and whose `is_owner` answers).
    pub viewer: RecipeViewer,
    /// Whether the caller may set `is_official` (an operator key).
    pub is_admin: bool,
}

impl RecipeCaller {
    fn account(&self) -> AccountId {
        self.viewer.account
    }
}

/// The recipe as `caller` sees it: secrets redacted, `is_owner` answered.
fn wire(mut r: RecipeRecord, caller: AccountId) -> JobRecipe {
    let _ = r.payload.parameters.parameters.map_secrets(|_| Ok::<_, ()>(REDACTED.to_string()));
    JobRecipe {
        object: OBJECT.into(),
        created_at: Timestamp(r.created_at_ms),
        updated_at: Timestamp(r.updated_at_ms),
        name: r.name,
        description: r.description,
        visibility: r.visibility,
        payload: r.payload,
        is_official: r.is_official,
        last_used_at: r.last_used_at_ms.map(Timestamp),
        uuid: r.uuid,
        quickstart_md: r.quickstart_md,
        input_schema: r.input_schema,
        thumbnail_url: r.thumbnail_url,
        is_owner: r.account_uuid == Some(caller),
        forked_from_recipe_uuid: r.forked_from_recipe_uuid,
    }
}

fn not_found(id: RecipeId) -> AppError {
    AppError::not_found("job recipe", id)
}

fn official_forbidden() -> AppError {
    AppError::Forbidden {
        code: "missing_permission",
        message: "is_official: only admins mark or unmark recipes as official (job_recipes.create.all / \
                  job_recipes.update.all, the admin preset); leave the field out"
            .into(),
    }
}

/// Lists the recipes the caller may see.
pub async fn list(
    state: &AppState,
    caller: RecipeCaller,
    filter: &RecipeFilter,
    paging: Paging,
) -> Result<Page<JobRecipe>, AppError> {
    let page = state.store.recipe_list(caller.viewer, filter, paging).await?;
    Ok(Page { items: page.items.into_iter().map(|r| wire(r, caller.account())).collect(), total: page.total })
}

/// One recipe the caller may see; 404 otherwise.
pub async fn fetch(state: &AppState, caller: RecipeCaller, id: RecipeId) -> Result<JobRecipe, AppError> {
    let r = state.store.recipe_fetch(caller.viewer, id).await?.ok_or_else(|| not_found(id))?;
    Ok(wire(r, caller.account()))
}

/// Checks a recipe body: the request's own rules plus the GPU registry's verdict on
/// the payload, in one 400.
async fn check(state: &AppState, req: RecipeRequest, creating: bool) -> Result<RecipeChanges, AppError> {
    let text = |key: &str| req.payload.as_ref().and_then(|p| p.get(key)).and_then(|v| v.as_str()).map(str::to_owned);
    let (gpu_name, gpu_uuid) = (text("gpu_name"), text("gpu_registry_uuid"));
    let gpu_errors = crate::app::gpu_registry::job_gpu_errors(state, gpu_name.as_deref(), gpu_uuid.as_deref()).await?;
    let gpu_errors: Vec<FieldError> =
        gpu_errors.into_iter().map(|e| FieldError::new(format!("payload.{}", e.field), e.message)).collect();
    let mut errors = match validate_recipe_request(req, creating) {
        Ok(changes) if gpu_errors.is_empty() => return Ok(changes),
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    };
    errors.extend(gpu_errors);
    Err(AppError::Validation(errors))
}

/// Encrypts a new payload's secrets; `"********"` keeps `old`'s (by volume index).
fn seal(state: &AppState, new: &mut JobTemplate, old: Option<&JobTemplate>) -> Result<(), AppError> {
    const P: &str = "payload.parameters.parameters";
    let keep = |field: String, kept: Option<&String>| {
        kept.cloned().ok_or_else(|| {
            AppError::field(field, "\"********\" keeps the stored secret, but none is stored: send the secret itself")
        })
    };
    let old = old.map(|o| &o.parameters.parameters);
    let d = &mut new.parameters.parameters;
    if let Some(s) = &d.secret {
        let sealed = if s == REDACTED {
            keep(format!("{P}.secret"), old.and_then(|o| o.secret.as_ref()))?
        } else {
            state.secrets.encrypt(s)
        };
        d.secret = Some(sealed);
    }
    for (i, v) in d.volumes.iter_mut().flatten().enumerate() {
        if let Some(s) = &v.secret {
            let kept = old.and_then(|o| o.volumes.as_ref()).and_then(|vs| vs.get(i)).and_then(|v| v.secret.as_ref());
            v.secret = Some(if s == REDACTED {
                keep(format!("{P}.volumes[{i}].secret"), kept)?
            } else {
                state.secrets.encrypt(s)
            });
        }
    }
    Ok(())
}

/// The uuid a create asks for (admins only), or a fresh one.
fn asked_uuid(req: &RecipeRequest, is_admin: bool) -> Result<RecipeId, AppError> {
    match req.uuid.as_deref().filter(|u| !u.is_empty()) {
        None => Ok(RecipeId::new()),
        Some(_) if !is_admin => Err(AppError::Forbidden {
            code: "missing_permission",
            message: "uuid: only admins choose a recipe's uuid (job_recipes.create.all, the admin preset); \
                      leave the field out"
                .into(),
        }),
        Some(text) => text.parse().map_err(|_| AppError::field("uuid", format!("must be a UUID, got {text:?}"))),
    }
}

/// Creates a recipe owned by the caller (201); admins may give its `uuid` (409 when
/// taken).
pub async fn create(state: &AppState, caller: RecipeCaller, req: RecipeRequest) -> Result<JobRecipe, AppError> {
    if req.is_official == Some(true) && !caller.is_admin {
        return Err(official_forbidden());
    }
    let uuid = asked_uuid(&req, caller.is_admin)?;
    let changes = check(state, req, true).await?;
    let now = now_ms();
    let mut payload = changes.payload.ok_or_else(|| AppError::field("payload", "is required"))?;
    seal(state, &mut payload, None)?;
    let record = RecipeRecord {
        uuid,
        account_uuid: Some(caller.account()),
        name: changes.name.ok_or_else(|| AppError::field("name", "is required"))?,
        description: changes.description.flatten(),
        visibility: changes.visibility.unwrap_or(RecipeVisibility::Private),
        is_official: changes.is_official.unwrap_or(false),
        payload,
        input_schema: changes.input_schema.unwrap_or_default(),
        quickstart_md: changes.quickstart_md.flatten(),
        thumbnail_url: changes.thumbnail_url.flatten(),
        forked_from_recipe_uuid: None,
        created_at_ms: now,
        updated_at_ms: now,
        last_used_at_ms: None,
    };
    state.store.recipe_create(&record).await?;
    Ok(wire(record, caller.account()))
}

/// The recipe `caller` may change, or why not: 404 when they cannot see it, 403
/// when they see it but it is not theirs (`owner` is the key's write scope).
async fn changeable(
    state: &AppState,
    caller: RecipeCaller,
    owner: Option<AccountId>,
    id: RecipeId,
    verb: &str,
) -> Result<RecipeRecord, AppError> {
    let current = state.store.recipe_fetch(caller.viewer, id).await?.ok_or_else(|| not_found(id))?;
    if owner.is_some() && current.account_uuid != owner {
        return Err(AppError::Forbidden {
            code: "not_owner",
            message: format!(
                "only this recipe's owner may {verb} it; fork it (POST /v1/job-recipes/{id}/fork) to get your own copy"
            ),
        });
    }
    Ok(current)
}

/// Applies a PATCH (absent fields unchanged; `payload` and `input_schema` replace whole).
pub async fn update(
    state: &AppState,
    caller: RecipeCaller,
    owner: Option<AccountId>,
    id: RecipeId,
    req: RecipeRequest,
) -> Result<JobRecipe, AppError> {
    if let Some(u) = req.uuid.as_deref().filter(|u| !u.is_empty())
        && u.parse::<RecipeId>().ok() != Some(id)
    {
        return Err(AppError::field("uuid", "a recipe's uuid cannot change; leave the field out"));
    }
    let changes = check(state, req, false).await?;
    // Compare-and-set: a concurrent update moves updated_at; re-read and re-apply.
    loop {
        let current = changeable(state, caller, owner, id, "change").await?;
        if changes.is_official.is_some_and(|o| o != current.is_official) && !caller.is_admin {
            return Err(official_forbidden());
        }
        let mut next = current.clone();
        if let Some(payload) = &changes.payload {
            let mut payload = payload.clone();
            seal(state, &mut payload, Some(&current.payload))?;
            next.payload = payload;
        }
        let c = changes.clone();
        next.name = c.name.unwrap_or(next.name);
        next.description = c.description.unwrap_or(next.description);
        next.visibility = c.visibility.unwrap_or(next.visibility);
        next.is_official = c.is_official.unwrap_or(next.is_official);
        next.input_schema = c.input_schema.unwrap_or(next.input_schema);
        next.quickstart_md = c.quickstart_md.unwrap_or(next.quickstart_md);
        next.thumbnail_url = c.thumbnail_url.unwrap_or(next.thumbnail_url);
        // Strictly later, so the token changes even within one millisecond.
        next.updated_at_ms = now_ms().max(current.updated_at_ms + 1);
        if state.store.recipe_update(owner, &next, current.updated_at_ms).await? {
            return Ok(wire(next, caller.account()));
        }
    }
}

/// Deletes a recipe; returns it as it was. Jobs cooked from it and its forks stay.
pub async fn delete(
    state: &AppState,
    caller: RecipeCaller,
    owner: Option<AccountId>,
    id: RecipeId,
) -> Result<JobRecipe, AppError> {
    let current = changeable(state, caller, owner, id, "delete").await?;
    if !state.store.recipe_delete(owner, id).await? {
        return Err(not_found(id));
    }
    Ok(wire(current, caller.account()))
}

/// Copies a recipe the caller may see into a PRIVATE (unless asked otherwise)
/// recipe of theirs, without registry secrets.
pub async fn fork(
    state: &AppState,
    caller: RecipeCaller,
    id: RecipeId,
    req: ForkRecipeRequest,
) -> Result<JobRecipe, AppError> {
    let asked = validate_recipe_request(
        RecipeRequest { name: req.name, visibility: req.visibility, ..Default::default() },
        false,
    )?;
    let source = state.store.recipe_fetch(caller.viewer, id).await?.ok_or_else(|| not_found(id))?;
    let mut payload = source.payload;
    let d = &mut payload.parameters.parameters;
    if d.secret.take().is_some() {
        d.user = None;
    }
    for v in d.volumes.iter_mut().flatten() {
        if v.secret.take().is_some() {
            v.user = None;
        }
    }
    let now = now_ms();
    let record = RecipeRecord {
        uuid: RecipeId::new(),
        account_uuid: Some(caller.account()),
        name: asked.name.unwrap_or(source.name),
        description: source.description,
        visibility: asked.visibility.unwrap_or(RecipeVisibility::Private),
        is_official: false,
        payload,
        input_schema: source.input_schema,
        quickstart_md: source.quickstart_md,
        thumbnail_url: source.thumbnail_url,
        forked_from_recipe_uuid: Some(source.uuid),
        created_at_ms: now,
        updated_at_ms: now,
        last_used_at_ms: None,
    };
    state.store.recipe_create(&record).await?;
    Ok(wire(record, caller.account()))
}

/// Creates a job in `account` from a recipe the caller may see (see the module docs).
pub async fn cook(
    state: &AppState,
    caller: RecipeCaller,
    account: AccountId,
    id: RecipeId,
    body: CookRecipeRequest,
    admission: crate::app::quotas::Admission,
) -> Result<Job, AppError> {
    let recipe = state.store.recipe_fetch(caller.viewer, id).await?.ok_or_else(|| not_found(id))?;
    let mut template = recipe.payload;
    template.parameters.parameters.map_secrets(|s| state.secrets.decrypt(s)).map_err(|e| {
        AppError::from(StoreError::Corrupt {
            table: "job_recipes",
            detail: format!("recipe {id}: a secret cannot be decrypted: {e}"),
        })
    })?;
    let merged = cook_body(&template, body, &recipe.input_schema)?;
    let req: CreateJobRequest = gantry_types::validate::from_json(merged).map_err(|e| AppError::Validation(vec![e]))?;
    let job = crate::app::jobs::submit(state, account, req, Some(recipe.uuid), admission).await?;
    if let Err(e) = state.store.recipe_touch(recipe.uuid, now_ms()).await {
        // The job exists; a missed last_used_at is not worth failing the request.
        tracing::warn!(error = %chain(&e), recipe = %recipe.uuid, "could not record the recipe's last use");
    }
    Ok(job)
}

/// Writes the official recipes that are missing (never overwriting an operator's
/// edit of one).
pub async fn seed(state: &AppState) -> anyhow::Result<()> {
    let mut records = Vec::new();
    for (i, s) in seeded_recipes().into_iter().enumerate() {
        let (payload, input_schema) =
            s.validated().map_err(|e| anyhow::anyhow!("seeded recipe {:?} is invalid: {e:?}", s.name))?;
        let at = SEEDED_AT_MS + i as i64;
        records.push(RecipeRecord {
            uuid: s.uuid.parse()?,
            account_uuid: None,
            name: s.name.into(),
            description: Some(s.description.into()),
            visibility: RecipeVisibility::Public,
            is_official: true,
            payload,
            input_schema,
            quickstart_md: Some(s.quickstart_md.into()),
            thumbnail_url: None,
            forked_from_recipe_uuid: None,
            created_at_ms: at,
            updated_at_ms: at,
            last_used_at_ms: None,
        });
    }
    let inserted = state.store.recipe_upsert_seed(&records).await?;
    tracing::info!(inserted, seeded = records.len(), "official job recipes loaded");
    Ok(())
}

/// What [`import`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// The uuid was new.
    Created,
    /// A recipe with that uuid existed and now holds the imported fields.
    Replaced,
}

/// `gantry admin recipes import`: writes one recipe as an operator, under the uuid
/// the file gives (a fresh one when absent). Checked exactly like `POST
/// /v1/job-recipes`. A new recipe belongs to `owner` (none: like the seeds, an
/// operator's, PUBLIC unless the file says otherwise); an existing one keeps its
/// owner, creation time and last use and takes every field the file sends, so
/// importing the same file twice changes nothing the second time.
pub async fn import(
    state: &AppState,
    owner: Option<AccountId>,
    req: RecipeRequest,
) -> Result<(JobRecipe, Imported), AppError> {
    let uuid = asked_uuid(&req, true)?;
    let changes = check(state, req, true).await?;
    let viewer = RecipeViewer { account: owner.unwrap_or(AccountId(uuid::Uuid::nil())), sees_all: true };
    let caller = viewer.account;
    loop {
        let current = state.store.recipe_fetch(viewer, uuid).await?;
        let now = now_ms();
        let c = changes.clone();
        let mut payload = c.payload.clone().ok_or_else(|| AppError::field("payload", "is required"))?;
        seal(state, &mut payload, current.as_ref().map(|r| &r.payload))?;
        let Some(current) = current else {
            let record = RecipeRecord {
                uuid,
                account_uuid: owner,
                name: c.name.ok_or_else(|| AppError::field("name", "is required"))?,
                description: c.description.flatten(),
                visibility: c.visibility.unwrap_or(if owner.is_some() {
                    RecipeVisibility::Private
                } else {
                    RecipeVisibility::Public
                }),
                is_official: c.is_official.unwrap_or(false),
                payload,
                input_schema: c.input_schema.unwrap_or_default(),
                quickstart_md: c.quickstart_md.flatten(),
                thumbnail_url: c.thumbnail_url.flatten(),
                forked_from_recipe_uuid: None,
                created_at_ms: now,
                updated_at_ms: now,
                last_used_at_ms: None,
            };
            match state.store.recipe_create(&record).await {
                Ok(()) => return Ok((wire(record, caller), Imported::Created)),
                // Created meanwhile (another import): replace it on the next turn.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let mut next = current.clone();
        next.payload = payload;
        next.name = c.name.unwrap_or(next.name);
        next.description = c.description.unwrap_or(next.description);
        next.visibility = c.visibility.unwrap_or(next.visibility);
        next.is_official = c.is_official.unwrap_or(next.is_official);
        next.input_schema = c.input_schema.unwrap_or(next.input_schema);
        next.quickstart_md = c.quickstart_md.unwrap_or(next.quickstart_md);
        next.thumbnail_url = c.thumbnail_url.unwrap_or(next.thumbnail_url);
        next.updated_at_ms = now.max(current.updated_at_ms + 1);
        if state.store.recipe_update(None, &next, current.updated_at_ms).await? {
            return Ok((wire(next, caller), Imported::Replaced));
        }
    }
}
