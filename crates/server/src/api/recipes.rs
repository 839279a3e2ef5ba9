//! `/v1/job-recipes` handlers: extract, authorize, call `app::recipes`, convert.
//!
//! Permissions: reading needs `job_recipes.read`, creating and forking
//! `job_recipes.create`, PATCH `job_recipes.update`, DELETE `job_recipes.delete`,
//! and cooking `jobs.create` (it creates a job; the recipe must be visible to the
//! caller). The `.all` scope (the admin preset) sees every recipe, changes any,
//! and may set `is_official`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gantry_store::RecipeViewer;
use gantry_types::job::Job;
use gantry_types::list::ListResponse;
use gantry_types::permissions::{Scope, scope_for};
use gantry_types::recipe::{CookRecipeRequest, ForkRecipeRequest, JobRecipe, RecipeRequest, parse_recipe_filter};
use gantry_types::{ErrorBody, RecipeId};
use serde::de::IgnoredAny;

use super::{envelope, list_params, path_id};
use crate::app;
use crate::app::caller::Caller;
use crate::app::recipes::RecipeCaller;
use crate::error::ApiError;
use crate::signed::Signed;
use crate::state::AppState;

/// How `caller`'s key reaches recipes (`admin_action`: which action's `.all` scope
/// lets it set `is_official`).
fn recipe_caller(caller: &Caller, admin_action: &str) -> RecipeCaller {
    let perms = &caller.key.record.permissions;
    RecipeCaller {
        viewer: RecipeViewer {
            account: caller.account(),
            sees_all: scope_for(perms, "job_recipes", "read") == Some(Scope::All),
        },
        is_admin: scope_for(perms, "job_recipes", admin_action) == Some(Scope::All),
    }
}

/// List the recipes you may see (yours, PUBLIC and official ones), newest first by default.
#[utoipa::path(get, path = "/v1/job-recipes", tag = "job-recipes",
    params(
        ("page" = Option<u64>, Query, description = "1-based page, default 1"),
        ("limit" = Option<u32>, Query, description = "1-50, default 20"),
        ("sort" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("filter[is_official]" = Option<bool>, Query, description = "true: official recipes only; false: the others"),
        ("filter[visibility]" = Option<String>, Query, description = "comma list of PRIVATE, PUBLIC, ARCHIVED"),
        ("filter[is_owner]" = Option<bool>, Query, description = "true: yours only; false: others' only"),
        ("filter[uuid]" = Option<String>, Query, description = "comma list of recipe uuids"),
        ("filter[forked_from_recipe_uuid]" = Option<String>, Query, description = "comma list: forks of these recipes"),
        ("filter[created_at]" = Option<String>, Query, description = "range of RFC 3339 dates from,to"),
    ),
    responses(
        (status = 200, description = "One page of recipes", body = ListResponse<JobRecipe>),
        (status = 400, description = "Bad paging or filter", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks job_recipes.read", body = ErrorBody),
    ))]
pub(super) async fn list_recipes(
    State(state): State<Arc<AppState>>,
    req: Signed<IgnoredAny>,
) -> Result<Json<ListResponse<JobRecipe>>, ApiError> {
    req.caller.require("job_recipes", "read")?;
    let (paging, filter) = list_params(&req.query, parse_recipe_filter)?;
    let page = app::recipes::list(&state, recipe_caller(&req.caller, "read"), &filter, paging).await?;
    Ok(envelope(page, paging))
}

/// Get one recipe.
#[utoipa::path(get, path = "/v1/job-recipes/{uuid}", tag = "job-recipes",
    params(("uuid" = String, Path, description = "Recipe uuid")),
    responses(
        (status = 200, description = "The recipe", body = JobRecipe),
        (status = 404, description = "No such recipe, or one you may not see", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks job_recipes.read", body = ErrorBody),
    ))]
pub(super) async fn get_recipe(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<JobRecipe>, ApiError> {
    req.caller.require("job_recipes", "read")?;
    let id: RecipeId = path_id("uuid", &uuid)?;
    Ok(Json(app::recipes::fetch(&state, recipe_caller(&req.caller, "read"), id).await?))
}

/// Create a recipe owned by your account. `payload` must be a valid create-job body.
#[utoipa::path(post, path = "/v1/job-recipes", tag = "job-recipes", request_body = RecipeRequest,
    responses(
        (status = 201, description = "Recipe created", body = JobRecipe),
        (status = 400, description = "Invalid body; every bad field is named (payload fields as payload.*)", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks job_recipes.create, or sets is_official without being an admin", body = ErrorBody),
    ))]
pub(super) async fn create_recipe(
    State(state): State<Arc<AppState>>,
    req: Signed<RecipeRequest>,
) -> Result<(StatusCode, Json<JobRecipe>), ApiError> {
    req.caller.require("job_recipes", "create")?;
    let recipe = app::recipes::create(&state, recipe_caller(&req.caller, "create"), req.body).await?;
    Ok((StatusCode::CREATED, Json(recipe)))
}

/// Change your recipe: fields sent replace (payload and input_schema whole); a
/// payload secret sent as "********" keeps the stored one.
#[utoipa::path(patch, path = "/v1/job-recipes/{uuid}", tag = "job-recipes", request_body = RecipeRequest,
    params(("uuid" = String, Path, description = "Recipe uuid")),
    responses(
        (status = 200, description = "The recipe after the change", body = JobRecipe),
        (status = 400, description = "Invalid body; every bad field is named", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Not your recipe (fork it), key lacks job_recipes.update, or is_official without being an admin", body = ErrorBody),
        (status = 404, description = "No such recipe, or one you may not see", body = ErrorBody),
    ))]
pub(super) async fn update_recipe(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<RecipeRequest>,
) -> Result<Json<JobRecipe>, ApiError> {
    let owner = req.caller.require("job_recipes", "update")?;
    let id: RecipeId = path_id("uuid", &uuid)?;
    let caller = recipe_caller(&req.caller, "update");
    Ok(Json(app::recipes::update(&state, caller, owner, id, req.body).await?))
}

/// Delete your recipe; returns it as it was. Jobs cooked from it and its forks stay.
#[utoipa::path(delete, path = "/v1/job-recipes/{uuid}", tag = "job-recipes",
    params(("uuid" = String, Path, description = "Recipe uuid")),
    responses(
        (status = 200, description = "The deleted recipe", body = JobRecipe),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Not your recipe, or key lacks job_recipes.delete", body = ErrorBody),
        (status = 404, description = "No such recipe, or one you may not see", body = ErrorBody),
    ))]
pub(super) async fn delete_recipe(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<IgnoredAny>,
) -> Result<Json<JobRecipe>, ApiError> {
    let owner = req.caller.require("job_recipes", "delete")?;
    let id: RecipeId = path_id("uuid", &uuid)?;
    Ok(Json(app::recipes::delete(&state, recipe_caller(&req.caller, "delete"), owner, id).await?))
}

/// Copy a recipe you may see into a new PRIVATE recipe of yours (registry secrets
/// are not copied).
#[utoipa::path(post, path = "/v1/job-recipes/{uuid}/fork", tag = "job-recipes", request_body = Option<ForkRecipeRequest>,
    params(("uuid" = String, Path, description = "Recipe uuid")),
    responses(
        (status = 201, description = "The fork", body = JobRecipe),
        (status = 400, description = "Invalid name or visibility", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks job_recipes.create", body = ErrorBody),
        (status = 404, description = "No such recipe, or one you may not see", body = ErrorBody),
    ))]
pub(super) async fn fork_recipe(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<Option<ForkRecipeRequest>>,
) -> Result<(StatusCode, Json<JobRecipe>), ApiError> {
    req.caller.require("job_recipes", "create")?;
    let id: RecipeId = path_id("uuid", &uuid)?;
    let caller = recipe_caller(&req.caller, "create");
    let recipe = app::recipes::fork(&state, caller, id, req.body.unwrap_or_default()).await?;
    Ok((StatusCode::CREATED, Json(recipe)))
}

/// Create a job from a recipe: body fields override the template (top-level fields
/// replace, parameters.parameters and env merge key by key), `inputs` fill the
/// recipe's input_schema, and the result is validated exactly like POST /v1/jobs.
/// `{}` cooks the template as is.
#[utoipa::path(post, path = "/v1/job-recipes/{uuid}/cook", tag = "job-recipes", request_body = Option<CookRecipeRequest>,
    params(("uuid" = String, Path, description = "Recipe uuid")),
    responses(
        (status = 201, description = "Job created, PENDING, with source_recipe_uuid", body = Job),
        (status = 400, description = "The merged job is invalid, or inputs are missing or unknown; every bad field is named", body = ErrorBody),
        (status = 401, description = "Missing or bad signature", body = ErrorBody),
        (status = 403, description = "Key lacks jobs.create, or the account is at its stored-job-bytes quota (job_storage_quota_exceeded)", body = ErrorBody),
        (status = 404, description = "No such recipe, or one you may not see", body = ErrorBody),
        (status = 429, description = "The account is at its pending-jobs quota (pending_jobs_quota_exceeded) or over its request rate (rate_limited); see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn cook_recipe(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    req: Signed<Option<CookRecipeRequest>>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let account = req.caller.require("jobs", "create")?.unwrap_or(req.caller.account());
    let id: RecipeId = path_id("uuid", &uuid)?;
    let caller = recipe_caller(&req.caller, "read");
    let admission = app::quotas::Admission::for_permissions(&req.caller.key.record.permissions);
    let job = app::recipes::cook(&state, caller, account, id, req.body.unwrap_or_default(), admission).await?;
    Ok((StatusCode::CREATED, Json(job)))
}
