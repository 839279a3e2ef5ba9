//! The `recipe_list` query: visibility (see `crate::recipes`) and the
//! `GET /v1/job-recipes` filters.

use gantry_types::list::Paging;
use gantry_types::recipe::RecipeFilter;

use super::{Conditions, ListQuery, Placeholders, SqlValue};
use crate::recipes::{RECIPE_COLUMNS, RecipeViewer, visible_to};

/// One page of the recipes `viewer` may see, narrowed by `filter`.
pub(crate) fn recipe_list(
    style: Placeholders,
    viewer: RecipeViewer,
    filter: &RecipeFilter,
    paging: Paging,
) -> ListQuery {
    let mut c = Conditions::new(style);
    let me = || SqlValue::Text(viewer.account.to_string());
    if !viewer.sees_all {
        let p = c.bind(me());
        c.clauses.push(visible_to(&p));
    }
    match filter.is_owner {
        Some(true) => c.eq("account_uuid", me()),
        Some(false) => {
            // Seeded recipes (no owner) are nobody's, so "not mine" includes them.
            let p = c.bind(me());
            c.clauses.push(format!("(account_uuid IS NULL OR account_uuid <> {p})"));
        }
        None => {}
    }
    if let Some(official) = filter.is_official {
        c.eq("is_official", SqlValue::Bool(official));
    }
    c.any_of("visibility", filter.visibilities.iter().map(|v| SqlValue::Text(v.as_str().into())));
    c.any_of("uuid", filter.uuids.iter().map(|id| SqlValue::Text(id.to_string())));
    c.any_of("forked_from_recipe_uuid", filter.forked_from.iter().map(|id| SqlValue::Text(id.to_string())));
    c.range("created_at_ms", filter.created_at, SqlValue::Int);
    c.finish("job_recipes", RECIPE_COLUMNS, paging)
}

#[cfg(test)]
mod tests {
    use gantry_types::AccountId;

    use super::*;

    #[test]
    fn visibility_applies_unless_the_viewer_sees_all() {
        let account = AccountId::new();
        let filter = RecipeFilter { is_official: Some(true), is_owner: Some(false), ..Default::default() };
        let q =
            recipe_list(Placeholders::Dollar, RecipeViewer { account, sees_all: false }, &filter, Paging::default());
        assert_eq!(
            q.count,
            "SELECT COUNT(*) FROM job_recipes WHERE (account_uuid = $1 OR (visibility <> 'ARCHIVED' AND \
             (visibility = 'PUBLIC' OR is_official))) AND (account_uuid IS NULL OR account_uuid <> $2) \
             AND is_official = $3"
        );
        let all = recipe_list(
            Placeholders::Question,
            RecipeViewer { account, sees_all: true },
            &RecipeFilter::default(),
            Paging::default(),
        );
        assert_eq!(all.count, "SELECT COUNT(*) FROM job_recipes");
    }
}
