//! `gantry recipes ...`: list and inspect job recipes, and cook one into a job.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_client::{ClientError, Credentials};
use gantry_types::RecipeId;
use gantry_types::recipe::{InputType, JobRecipe};
use serde_json::{Map, Value, json};

use crate::output::{self, JsonFlag};

/// Recipes commands.
#[derive(Subcommand)]
pub enum RecipesCommand {
    /// List the recipes you may see (yours, public and official ones), newest first.
    List(ListArgs),
    /// Show one recipe: its template, inputs and quickstart.
    Get {
        /// Recipe uuid.
        uuid: RecipeId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Create a job from a recipe, with inputs and overrides.
    Cook(CookArgs),
}

/// `gantry recipes list`.
#[derive(Args)]
pub struct ListArgs {
    /// Only official recipes.
    #[arg(long)]
    official: bool,
    /// Only your own recipes.
    #[arg(long)]
    mine: bool,
    /// Only these visibilities (comma list of PRIVATE, PUBLIC, ARCHIVED).
    #[arg(long)]
    visibility: Option<String>,
    /// Page size, 1-50.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Page, from 1.
    #[arg(long, default_value_t = 1)]
    page: u64,
    #[command(flatten)]
    out: JsonFlag,
}

/// `gantry recipes cook`.
#[derive(Args)]
pub struct CookArgs {
    /// Recipe uuid.
    uuid: RecipeId,
    /// A value for one of the recipe's inputs, KEY=VALUE (repeatable; see `gantry recipes get`).
    #[arg(long = "input", value_name = "KEY=VALUE")]
    inputs: Vec<String>,
    /// Overrides as JSON in the create-job shape (`-` for stdin); flags below apply on top.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Job title.
    #[arg(long)]
    title: Option<String>,
    /// Environment variable KEY=VALUE, merged into the template's (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    out: JsonFlag,
}

/// Runs a recipes command.
pub async fn run(cmd: RecipesCommand) -> anyhow::Result<()> {
    let client = crate::tls::client(Credentials::from_env()?)?;
    match cmd {
        RecipesCommand::List(args) => {
            let mut query =
                vec![("limit".to_string(), args.limit.to_string()), ("page".to_string(), args.page.to_string())];
            if args.official {
                query.push(("filter[is_official]".into(), "true".into()));
            }
            if args.mine {
                query.push(("filter[is_owner]".into(), "true".into()));
            }
            if let Some(v) = args.visibility {
                query.push(("filter[visibility]".into(), v));
            }
            let list = client.list_recipes(&query).await?;
            if args.out.json {
                return output::json(&list);
            }
            let mut t = output::table(&["UUID", "NAME", "TASK", "VISIBILITY", "OFFICIAL", "YOURS", "INPUTS"]);
            for r in &list.data {
                t.add_row(vec![
                    r.uuid.to_string(),
                    r.name.clone(),
                    r.payload.task.as_str().to_string(),
                    r.visibility.as_str().to_string(),
                    r.is_official.to_string(),
                    r.is_owner.to_string(),
                    inputs_summary(r),
                ]);
            }
            outln!("{t}")?;
            outln!(
                "{} of {} recipe(s), page {}; inputs marked * are required",
                list.data.len(),
                list.total,
                list.page
            )?;
            Ok(())
        }
        RecipesCommand::Get { uuid, out } => {
            let r = client.get_recipe(uuid).await.map_err(|e| hint(e, uuid))?;
            if out.json {
                return output::json(&r);
            }
            details(&r)?;
            Ok(())
        }
        RecipesCommand::Cook(args) => {
            let (uuid, json_out) = (args.uuid, args.out.json);
            let recipe = client.get_recipe(uuid).await.map_err(|e| hint(e, uuid))?;
            let body = cook_body(&recipe, args)?;
            let job = client.cook_recipe(uuid, &body).await.map_err(|e| hint(e, uuid))?;
            if json_out {
                return output::json(&job);
            }
            outln!("Cooked job {} ({}) from recipe {:?}", job.uuid, job.status.as_str(), recipe.name)?;
            output::job_details(&job)?;
            outln!("Follow it with `gantry jobs get {}`.", job.uuid)?;
            Ok(())
        }
    }
}

/// Adds what to do to the errors people hit most.
fn hint(e: ClientError, uuid: RecipeId) -> anyhow::Error {
    let advice = match &e {
        ClientError::Api { status, .. } if status.as_u16() == 404 => {
            Some("no recipe with that uuid is visible to your key; `gantry recipes list` shows the ones you may use")
        }
        ClientError::Api { body, .. } if body.error.details.iter().any(|d| d.field.starts_with("inputs.")) => {
            Some("supply inputs with --input KEY=VALUE; `gantry recipes get UUID` lists them")
        }
        ClientError::Api { status, .. } if status.as_u16() == 400 => Some(
            "fix the named fields with --title/--env or an overrides file (-f); fields are as in `gantry jobs create`",
        ),
        _ => None,
    };
    match advice {
        // The server's message (with every field) first, then what to do about it.
        Some(a) => anyhow::anyhow!("recipe {uuid}: {e}\nhint: {a}"),
        None => anyhow::Error::new(e).context(format!("recipe {uuid}")),
    }
}

fn inputs_summary(r: &JobRecipe) -> String {
    let keys: Vec<String> =
        r.input_schema.iter().map(|i| if i.required { format!("{}*", i.key) } else { i.key.clone() }).collect();
    if keys.is_empty() { "-".into() } else { keys.join(", ") }
}

fn details(r: &JobRecipe) -> std::io::Result<()> {
    let p = &r.payload;
    let d = &p.parameters.parameters;
    let mut t = output::table(&["field", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("uuid", r.uuid.to_string()),
        ("name", r.name.clone()),
        ("description", r.description.clone().unwrap_or_else(|| "-".into())),
        ("visibility", r.visibility.as_str().into()),
        ("official", r.is_official.to_string()),
        ("yours", r.is_owner.to_string()),
        ("task", p.task.as_str().into()),
        ("image", format!("{}:{}", d.image, d.tag.as_deref().unwrap_or("latest"))),
        (
            "resources",
            format!("{} CPU, {} GPU, {} GB RAM, {} GB VRAM", p.cpu_count, p.gpu_count, p.min_ram_gb, p.min_vram_gb),
        ),
        ("ports", d.ports.as_ref().map(|ps| format!("{ps:?}")).unwrap_or_else(|| "-".into())),
        ("forked from", r.forked_from_recipe_uuid.map(|f| f.to_string()).unwrap_or_else(|| "-".into())),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    outln!("{t}")?;
    if !r.input_schema.is_empty() {
        let mut t = output::table(&["INPUT", "TYPE", "REQUIRED", "DEFAULT", "SETS", "ABOUT"]);
        for i in &r.input_schema {
            t.add_row(vec![
                i.key.clone(),
                i.kind.as_str().to_string(),
                i.required.to_string(),
                i.default_value.as_ref().map(Value::to_string).unwrap_or_else(|| "-".into()),
                i.target.clone(),
                i.description.clone().or_else(|| i.label.clone()).unwrap_or_default(),
            ]);
        }
        outln!("{t}")?;
    }
    if let Some(q) = &r.quickstart_md {
        outln!("\n{q}")?;
    }
    outln!("\nCook it: gantry recipes cook {}{}", r.uuid, {
        let req: Vec<String> =
            r.input_schema.iter().filter(|i| i.required).map(|i| format!(" --input {}=...", i.key)).collect();
        req.concat()
    })
}

/// The cook body: the overrides file (if any), flags on top, and `inputs` typed as
/// the recipe's schema says (`--input epochs=3` sends the number 3).
fn cook_body(recipe: &JobRecipe, args: CookArgs) -> anyhow::Result<Value> {
    let mut body = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("stdin is not JSON")?
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => json!({}),
    };
    let obj = body.as_object_mut().context("the overrides file must hold a JSON object")?;
    if let Some(title) = args.title {
        obj.insert("title".into(), json!(title));
    }
    if !args.env.is_empty() {
        let mut env = Map::new();
        for kv in &args.env {
            let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv:?} is not KEY=VALUE"))?;
            env.insert(k.into(), json!(v));
        }
        let params = obj.entry("parameters").or_insert_with(|| json!({"parameters": {}}));
        let docker = params
            .as_object_mut()
            .context("parameters must be an object")?
            .entry("parameters")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .context("parameters.parameters must be an object")?;
        let existing = docker.entry("env").or_insert_with(|| json!({}));
        existing.as_object_mut().context("env must be an object")?.extend(env);
    }
    if !args.inputs.is_empty() {
        let mut inputs = Map::new();
        for kv in &args.inputs {
            let (k, v) = kv.split_once('=').with_context(|| format!("--input {kv:?} is not KEY=VALUE"))?;
            let kind = recipe.input_schema.iter().find(|i| i.key == k).map(|i| i.kind);
            let value = match kind {
                Some(InputType::Number | InputType::Integer) => serde_json::from_str::<serde_json::Number>(v)
                    .map(Value::Number)
                    .with_context(|| format!("--input {k}: {v:?} is not a number"))?,
                Some(InputType::Boolean) => match v {
                    "true" => json!(true),
                    "false" => json!(false),
                    _ => anyhow::bail!("--input {k}: {v:?} is not true or false"),
                },
                // Strings, and keys the recipe lacks (the server names those).
                _ => json!(v),
            };
            inputs.insert(k.to_string(), value);
        }
        obj.insert("inputs".into(), Value::Object(inputs));
    }
    Ok(body)
}
