//! Job recipes' rows, shared by both backends (the `job_recipes` table of migration
//! 0004): the record callers pass, who is looking ([`RecipeViewer`]), the store
//! trait, the row both backends read and write, and the SQL text both backends run
//! (placeholder spelling aside).
//!
//! Visibility is decided here, in SQL, for fetches and lists alike (the rule of
//! `gantry_types::recipe::is_visible`): a viewer sees their own recipes, and others'
//! that are PUBLIC or official unless ARCHIVED. A recipe the viewer may not see is
//! reported as absent, so "another account's private recipe" and "no recipe" are
//! indistinguishable above this crate.

use async_trait::async_trait;
use gantry_types::list::Paging;
use gantry_types::recipe::{JobTemplate, RecipeFilter, RecipeInput, RecipeVisibility};
use gantry_types::{AccountId, RecipeId};
use serde::{Deserialize, Serialize};

use crate::sql::row::IntoRecord;
use crate::sql::row::{Columns, row};
use crate::sql::{Placeholders, Subject};
use crate::{Page, StoreError, StoreResult};

/// Columns a recipe is read from and written to (see [`RecipeRow`]).
pub(crate) const RECIPE_COLUMNS: &str = RecipeRow::LIST;

/// A recipe as stored (the payload's registry secrets encrypted).
#[derive(Clone, Debug, PartialEq)]
pub struct RecipeRecord {
    /// ID.
    pub uuid: RecipeId,
    /// Owner; `None` for Gantry's seeded recipes.
    pub account_uuid: Option<AccountId>,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Who may see it.
    pub visibility: RecipeVisibility,
    /// Curated by the operators.
    pub is_official: bool,
    /// The job template.
    pub payload: JobTemplate,
    /// Inputs a cook supplies.
    pub input_schema: Vec<RecipeInput>,
    /// Markdown.
    pub quickstart_md: Option<String>,
    /// Picture URL.
    pub thumbnail_url: Option<String>,
    /// Source of a fork.
    pub forked_from_recipe_uuid: Option<RecipeId>,
    /// Created, epoch ms.
    pub created_at_ms: i64,
    /// Last change, epoch ms (also the compare-and-set token of `recipe_update`).
    pub updated_at_ms: i64,
    /// Last cooked, epoch ms.
    pub last_used_at_ms: Option<i64>,
}

/// Who reads: an account, or an operator who sees every recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipeViewer {
    /// The caller's account (what `filter[is_owner]` compares with).
    pub account: AccountId,
    /// An operator (`job_recipes.read.all`): visibility does not apply.
    pub sees_all: bool,
}

/// The JSON `body` column.
#[derive(Serialize, Deserialize)]
struct Body {
    description: Option<String>,
    payload: JobTemplate,
    input_schema: Vec<RecipeInput>,
    quickstart_md: Option<String>,
    thumbnail_url: Option<String>,
}

row! {
    /// A recipe as stored (the body as JSON).
    #[derive(Clone, Debug)]
    pub(crate) struct RecipeRow in "job_recipes" (read, write) {
        uuid: String,
        account_uuid: Option<String>,
        name: String,
        visibility: String,
        is_official: bool,
        forked_from_recipe_uuid: Option<String>,
        created_at_ms: i64,
        updated_at_ms: i64,
        last_used_at_ms: Option<i64>,
        body: String,
    }
}

impl RecipeRow {
    /// The columns of `r`.
    pub fn new(r: &RecipeRecord) -> StoreResult<Self> {
        let body = Body {
            description: r.description.clone(),
            payload: r.payload.clone(),
            input_schema: r.input_schema.clone(),
            quickstart_md: r.quickstart_md.clone(),
            thumbnail_url: r.thumbnail_url.clone(),
        };
        let body = serde_json::to_string(&body)
            .map_err(|e| StoreError::Database { during: "recipe encoding", source: Box::new(e) })?;
        Ok(Self {
            uuid: r.uuid.to_string(),
            account_uuid: r.account_uuid.map(|a| a.to_string()),
            name: r.name.clone(),
            visibility: r.visibility.as_str().to_string(),
            is_official: r.is_official,
            forked_from_recipe_uuid: r.forked_from_recipe_uuid.map(|f| f.to_string()),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            last_used_at_ms: r.last_used_at_ms,
            body,
        })
    }
}

impl IntoRecord for RecipeRow {
    type Record = RecipeRecord;

    /// Parses the uuids, the visibility and the body.
    fn into_record(self) -> StoreResult<RecipeRecord> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "job_recipes", detail };
        let uuid: RecipeId = self.uuid.parse().map_err(|e| corrupt(format!("bad uuid {:?}: {e}", self.uuid)))?;
        let account_uuid = match &self.account_uuid {
            Some(a) => Some(a.parse().map_err(|e| corrupt(format!("recipe {uuid}: bad account {a:?}: {e}")))?),
            None => None,
        };
        let forked_from_recipe_uuid = match &self.forked_from_recipe_uuid {
            Some(f) => Some(f.parse().map_err(|e| corrupt(format!("recipe {uuid}: bad fork source {f:?}: {e}")))?),
            None => None,
        };
        let visibility = RecipeVisibility::parse(&self.visibility)
            .ok_or_else(|| corrupt(format!("recipe {uuid}: unknown visibility {:?}", self.visibility)))?;
        let body: Body = serde_json::from_str(&self.body)
            .map_err(|e| corrupt(format!("recipe {uuid}: body is not a recipe: {e}")))?;
        Ok(RecipeRecord {
            uuid,
            account_uuid,
            name: self.name,
            description: body.description,
            visibility,
            is_official: self.is_official,
            payload: body.payload,
            input_schema: body.input_schema,
            quickstart_md: body.quickstart_md,
            thumbnail_url: body.thumbnail_url,
            forked_from_recipe_uuid,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            last_used_at_ms: self.last_used_at_ms,
        })
    }
}

/// What a recipe insert is about, for `Conflict`/`MissingReference` messages.
pub(crate) fn subject(r: &RecipeRecord) -> Subject {
    Subject {
        row: format!("job recipe {}", r.uuid),
        unique: None,
        reference: r.account_uuid.map(|a| format!("account {a}")),
    }
}

/// Inserts one row; `on_conflict` is `""` or `" ON CONFLICT DO NOTHING"` (seeding).
pub(crate) fn insert_sql(style: Placeholders, on_conflict: &str) -> String {
    crate::sql::row::insert_sql::<RecipeRow>(style, on_conflict)
}

/// The visibility rule on placeholder `p` (the viewer's account uuid).
pub(crate) fn visible_to(p: &str) -> String {
    format!("(account_uuid = {p} OR (visibility <> 'ARCHIVED' AND (visibility = 'PUBLIC' OR is_official)))")
}

/// One recipe by uuid (`1`) visible to account `2`, or to anyone when `2` is NULL.
pub(crate) fn fetch_sql(style: Placeholders) -> String {
    let (id, viewer) = (style.nth(1), style.nth(2));
    let cast = if style == Placeholders::Dollar { "::text" } else { "" };
    format!(
        "SELECT {RECIPE_COLUMNS} FROM job_recipes WHERE uuid = {id} AND ({viewer}{cast} IS NULL OR {})",
        visible_to(&viewer)
    )
}

/// Compare-and-set update of the mutable columns: `1` uuid, `2` expected
/// updated_at_ms, `3` owner scope (NULL = any), then name, visibility, is_official,
/// updated_at_ms, body.
pub(crate) fn update_sql(style: Placeholders) -> String {
    let n = |i| style.nth(i);
    let cast = if style == Placeholders::Dollar { "::text" } else { "" };
    format!(
        "UPDATE job_recipes SET name = {}, visibility = {}, is_official = {}, updated_at_ms = {}, body = {} \
         WHERE uuid = {} AND updated_at_ms = {} AND ({}{cast} IS NULL OR account_uuid = {})",
        n(4),
        n(5),
        n(6),
        n(7),
        n(8),
        n(1),
        n(2),
        n(3),
        n(3)
    )
}

/// Deletes `1` within owner scope `2` (NULL = any).
pub(crate) fn delete_sql(style: Placeholders) -> String {
    let cast = if style == Placeholders::Dollar { "::text" } else { "" };
    let (id, scope) = (style.nth(1), style.nth(2));
    format!("DELETE FROM job_recipes WHERE uuid = {id} AND ({scope}{cast} IS NULL OR account_uuid = {scope})")
}

/// Moves last_used_at_ms of `1` forward to `2`.
pub(crate) fn touch_sql(style: Placeholders) -> String {
    let (id, at) = (style.nth(1), style.nth(2));
    format!(
        "UPDATE job_recipes SET last_used_at_ms = {at} \
         WHERE uuid = {id} AND (last_used_at_ms IS NULL OR last_used_at_ms < {at})"
    )
}

/// Job recipes in the store. Reads take a [`RecipeViewer`] instead of an account
/// scope: besides their own, accounts see others' PUBLIC and official recipes unless
/// ARCHIVED; a recipe the viewer may not see is reported as absent. Writes take the
/// usual owner scope (`None` = an operator), and a seeded recipe (no owner) is an
/// operator's only.
#[async_trait]
pub trait RecipeStore {
    /// Inserts the seeded recipes whose uuid is missing; an existing row (an
    /// operator's edit of a seed) is never overwritten, and servers seeding at once
    /// are safe. Returns the rows inserted.
    async fn recipe_upsert_seed(&self, recipes: &[RecipeRecord]) -> StoreResult<u64>;
    /// Creates a recipe; `Conflict` on a duplicate uuid, `MissingReference` when its
    /// owner account does not exist.
    async fn recipe_create(&self, recipe: &RecipeRecord) -> StoreResult<()>;
    /// One recipe, if `viewer` may see it.
    async fn recipe_fetch(&self, viewer: RecipeViewer, id: RecipeId) -> StoreResult<Option<RecipeRecord>>;
    /// The recipes `viewer` may see matching `filter`, by (created_at, uuid), newest
    /// first unless `paging` says otherwise.
    async fn recipe_list(
        &self,
        viewer: RecipeViewer,
        filter: &RecipeFilter,
        paging: Paging,
    ) -> StoreResult<Page<RecipeRecord>>;
    /// Replaces name, visibility, is_official, updated_at and the body (description,
    /// payload, input_schema, quickstart_md, thumbnail_url) with `recipe`'s, if the row
    /// (in owner scope) still has `expected_updated_at_ms` (compare-and-set: a
    /// concurrent update makes this return `false`; re-read and retry). Never changes
    /// uuid, owner, fork source, created_at or last_used_at.
    async fn recipe_update(
        &self,
        owner: Option<AccountId>,
        recipe: &RecipeRecord,
        expected_updated_at_ms: i64,
    ) -> StoreResult<bool>;
    /// Deletes a recipe in owner scope; whether it existed there. Its forks and the
    /// jobs cooked from it stay.
    async fn recipe_delete(&self, owner: Option<AccountId>, id: RecipeId) -> StoreResult<bool>;
    /// Moves last_used_at forward to `now_ms` (never back; updated_at does not move).
    async fn recipe_touch(&self, id: RecipeId, now_ms: i64) -> StoreResult<()>;
}
