//! `gantry admin recipes import FILE.json`: publishes recipes under the uuids the file
//! gives (e.g. an upstream official recipe's, which clients hard-code), straight into
//! the store, so it works before any admin key exists and while the server runs.
//!
//! The file holds one recipe or an array of them, in the shape `GET
//! /v1/job-recipes/{uuid}` returns (read-only fields such as `object`, `created_at`,
//! `is_owner` are ignored) or `POST /v1/job-recipes` takes, plus `uuid`. Each is checked
//! like an API create (every bad field named, prefixed by its position) and written in
//! file order; the import stops at the first invalid one. An existing uuid is replaced,
//! so importing is repeatable.

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_server::admin::{Imported, RecipeImporter};
use gantry_types::AccountId;
use gantry_types::recipe::RecipeRequest;

use crate::admin::{StoreArgs, open};

/// `gantry admin recipes ...`.
#[derive(Subcommand)]
pub enum AdminRecipesCommand {
    /// Create or replace recipes from a JSON file (one recipe object or an array), keeping their `uuid`s.
    Import(ImportArgs),
}

/// `gantry admin recipes import`.
#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The JSON file (`-` for standard input).
    file: std::path::PathBuf,
    /// Owner of recipes created by the import (default: none, like the seeded official
    /// recipes, PUBLIC unless the file says otherwise).
    #[arg(long)]
    account: Option<AccountId>,
    /// Print the imported recipes as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Runs an admin recipes command.
pub async fn run(cmd: AdminRecipesCommand) -> anyhow::Result<()> {
    match cmd {
        AdminRecipesCommand::Import(args) => import_file(args).await,
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<RecipeRequest>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| serde_json::from_value(item).with_context(|| format!("recipe [{i}] is not a recipe object")))
        .collect()
}

async fn import_file(args: ImportArgs) -> anyhow::Result<()> {
    let requests = read(&args.file)?;
    let (store, secrets) = open(&args.store).await?;
    if let Some(account) = args.account {
        store.account_fetch(account).await?.with_context(|| format!("no account {account}; omit --account"))?;
    }
    let importer = RecipeImporter::new(store, secrets);
    let mut out = Vec::new();
    for (i, req) in requests.into_iter().enumerate() {
        let (recipe, what) = importer.import(args.account, req).await.map_err(|e| describe(i, e))?;
        if !args.json {
            let verb = if what == Imported::Created { "created" } else { "replaced" };
            outln!("{verb} {}  {}", recipe.uuid, recipe.name)?;
        }
        out.push(recipe);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}

/// The error of recipe `i`, every bad field named.
fn describe(i: usize, e: gantry_server::AppError) -> anyhow::Error {
    match e {
        gantry_server::AppError::Validation(fields) => {
            let lines: Vec<String> = fields.iter().map(|f| format!("  [{i}].{}: {}", f.field, f.message)).collect();
            anyhow::anyhow!(
                "recipe [{i}] is invalid (the recipes before it were imported, it and those after it were not):\n{}",
                lines.join("\n")
            )
        }
        other => anyhow::Error::new(other).context(format!("recipe [{i}] was not imported")),
    }
}
