//! Permissions are upstream's scoped strings `<resource>.<action>.<scope>`
//! (`jobs.read.own`). Scope `own` reaches the key's own account; Gantry adds scope
//! `all` for operators (the admin preset). A key holds a list; each endpoint requires
//! one (resource, action).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How far a permission reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The key's own account.
    Own,
    /// Every account (operators).
    All,
}

/// Resources and actions that exist; a permission string naming anything else is
/// refused at key creation so typos surface at once.
pub const RESOURCES: &[(&str, &[&str])] = &[
    ("jobs", &["create", "read", "update"]),
    ("job_runs", &["read", "update"]),
    ("job_recipes", &["create", "read", "update", "delete"]),
    ("nodes", &["create", "read", "update"]),
    ("api_keys", &["create", "read", "update", "delete"]),
    ("accounts", &["read", "update"]),
    ("consumer_profiles", &["read", "update"]),
    ("compute", &["read", "create"]),
    ("gpu_registry", &["read", "create"]),
    ("relays", &["read"]),
];

/// A named permission set, as the upstream console offers ("Compute Consumer",
/// "Compute Node") plus Gantry's operator preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Submits and watches jobs.
    Consumer,
    /// Runs a node agent.
    Node,
    /// Everything, on every account.
    Admin,
    /// Runs a relay (`gantry relay`): reads the key relay tokens are verified with,
    /// nothing else (issue 14).
    Relay,
}

impl Preset {
    /// Parses `consumer`, `node`, `admin` or `relay`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "consumer" => Some(Self::Consumer),
            "node" => Some(Self::Node),
            "admin" => Some(Self::Admin),
            "relay" => Some(Self::Relay),
            _ => None,
        }
    }

    /// The permission strings of this preset.
    pub fn permissions(self) -> Vec<String> {
        let own = |list: &[&str]| list.iter().map(|p| format!("{p}.own")).collect::<Vec<_>>();
        match self {
            Self::Consumer => own(&[
                "jobs.create",
                "jobs.read",
                "jobs.update",
                "job_runs.read",
                "job_recipes.create",
                "job_recipes.read",
                "job_recipes.update",
                "job_recipes.delete",
                "api_keys.create",
                "api_keys.read",
                "api_keys.update",
                "api_keys.delete",
                "accounts.read",
                "consumer_profiles.read",
                "consumer_profiles.update",
                "compute.read",
                "compute.create",
                "gpu_registry.read",
            ]),
            Self::Node => own(&[
                "nodes.create",
                "nodes.read",
                "nodes.update",
                "job_runs.read",
                "job_runs.update",
                "api_keys.read",
                "accounts.read",
                "gpu_registry.read",
            ]),
            Self::Relay => own(&["relays.read"]),
            Self::Admin => {
                RESOURCES.iter().flat_map(|(r, actions)| actions.iter().map(move |a| format!("{r}.{a}.all"))).collect()
            }
        }
    }
}

/// Checks a permission string's form and that it names a known resource and action.
pub fn check_permission(text: &str) -> Result<(), String> {
    let mut parts = text.split('.');
    let (Some(resource), Some(action), Some(scope), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{text:?} is not of the form resource.action.scope (e.g. jobs.read.own)"));
    };
    let Some((_, actions)) = RESOURCES.iter().find(|(r, _)| *r == resource) else {
        return Err(format!("unknown resource {resource:?} in {text:?}"));
    };
    if !actions.contains(&action) {
        return Err(format!("unknown action {action:?} for {resource} (one of {})", actions.join(", ")));
    }
    if scope != "own" && scope != "all" {
        return Err(format!("unknown scope {scope:?} in {text:?} (own or all)"));
    }
    Ok(())
}

/// The widest scope `held` grants for (resource, action), if any.
pub fn scope_for(held: &[String], resource: &str, action: &str) -> Option<Scope> {
    held.iter()
        .filter_map(|p| {
            let rest = p.strip_prefix(resource)?.strip_prefix('.')?.strip_prefix(action)?;
            match rest {
                ".own" => Some(Scope::Own),
                ".all" => Some(Scope::All),
                _ => None,
            }
        })
        .max()
}

/// Whether a key holding `held` may grant `wanted` to a new key: never more than it
/// has, so a consumer key cannot mint an admin key.
pub fn may_grant(held: &[String], wanted: &str) -> bool {
    let mut parts = wanted.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(r), Some(a), Some(s)) => {
            let need = if s == "all" { Scope::All } else { Scope::Own };
            scope_for(held, r, a).is_some_and(|have| have >= need)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_hold_only_valid_permissions() {
        for preset in [Preset::Consumer, Preset::Node, Preset::Admin, Preset::Relay] {
            for p in preset.permissions() {
                check_permission(&p).unwrap();
            }
        }
    }

    #[test]
    fn scopes_and_grants() {
        let consumer = Preset::Consumer.permissions();
        assert_eq!(scope_for(&consumer, "jobs", "read"), Some(Scope::Own));
        assert_eq!(scope_for(&consumer, "nodes", "update"), None);
        assert_eq!(scope_for(&Preset::Admin.permissions(), "jobs", "read"), Some(Scope::All));
        assert!(may_grant(&consumer, "jobs.read.own"));
        assert!(!may_grant(&consumer, "jobs.read.all"));
        assert!(!may_grant(&consumer, "nodes.update.own"));
        assert!(check_permission("jobs.fly.own").is_err());
        assert!(check_permission("jobs.read").is_err());
        assert!(check_permission("robots.read.own").is_err());
    }
}
