//! A recipe's `input_schema`: the few values a person fills in when cooking
//! ("minimal inputs, like an SSH key", upstream's glossary).
//!
//! Items keep upstream's fields (`key`, `type`, `label`, `required`, `description`,
//! `placeholder`, `default_value`, `options[{label, value}]`). Upstream's cook body has
//! no field for them (API.md §8 q7), so Gantry adds two things:
//!
//! * the cook body's `inputs` object, `{"KEY": value}`;
//! * each item's `target`, where its value lands in the job: `env.NAME` (the variable
//!   NAME in `parameters.parameters.env`; the default is `env.<key>`), or one of the
//!   Docker parameters `sshkey`, `image`, `tag`.
//!
//! Values are JSON strings, numbers or booleans as the item's `type` says
//! (`string`, `number`, `integer`, `boolean`); env variables receive their text
//! (`8`, `true`). An item with `options` accepts only those values. Unknown keys are
//! refused (a typo must not silently do nothing), a missing required input is a 400
//! naming `inputs.KEY`, and a missing optional one falls back to `default_value`, if any.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::FieldError;

/// Most inputs one recipe may declare.
pub const MAX_INPUTS: usize = 64;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// Longest label/description/placeholder, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// Longest value supplied for an input, in bytes.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// Docker parameters an input may target besides `env.NAME`.
pub const PARAMETER_TARGETS: [&str; 3] = ["sshkey", "image", "tag"];

/// What kind of value an input takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// A JSON integer.
    Integer,
    /// `true` or `false`.
    Boolean,
}

impl InputType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::String, Self::Number, Self::Integer, Self::Boolean].into_iter().find(|t| t.as_str() == text)
    }

    /// The text an env variable receives for `value`, or why it does not fit.
    fn text_of(self, value: &Value) -> Result<String, String> {
        match (self, value) {
            (Self::String, Value::String(s)) => Ok(s.clone()),
            (Self::Number, Value::Number(n)) => Ok(n.to_string()),
            (Self::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            (Self::Integer, Value::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 9e15) => {
                Ok(format!("{}", n.as_f64().unwrap_or_default() as i64))
            }
            (Self::Boolean, Value::Bool(b)) => Ok(b.to_string()),
            (t, v) => Err(format!("must be a JSON {}, got {v}", t.as_str())),
        }
    }
}

/// One allowed value of an input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InputOption {
    /// What people see.
    pub label: String,
    /// What is sent.
    pub value: Value,
}

/// One item of `input_schema`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecipeInput {
    /// The name a cook uses in `inputs`.
    pub key: String,
    /// `string`, `number`, `integer` or `boolean`.
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether a cook must supply it.
    pub required: bool,
    /// Help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Example shown in an empty field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Used when a cook does not supply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// The only values accepted, when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<InputOption>,
    /// Gantry addition: where the value lands (`env.NAME`, `sshkey`, `image`, `tag`).
    pub target: String,
}

/// An `input_schema` item as received.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RecipeInputRequest {
    /// Required: letters, digits and `_`, not starting with a digit.
    pub key: Option<String>,
    /// `string` (default), `number`, `integer` or `boolean`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Display name.
    pub label: Option<String>,
    /// Default false.
    pub required: Option<bool>,
    /// Help text.
    pub description: Option<String>,
    /// Example.
    pub placeholder: Option<String>,
    /// Default value (of the input's type).
    pub default_value: Option<Value>,
    /// Allowed values.
    pub options: Option<Vec<InputOption>>,
    /// `env.NAME` (default `env.<key>`), `sshkey`, `image` or `tag`.
    pub target: Option<String>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a whole `input_schema`, naming fields as `input_schema[i].field`.
pub fn validate_input_schema(items: Vec<RecipeInputRequest>) -> Result<Vec<RecipeInput>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if items.len() > MAX_INPUTS {
        errors.push(FieldError::new("input_schema", format!("at most {MAX_INPUTS} inputs")));
    }
    let (mut keys, mut targets) = (BTreeSet::new(), BTreeSet::new());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let f = |name: &str| format!("input_schema[{i}].{name}");
        let key = item.key.unwrap_or_default();
        if !is_identifier(&key) || key.len() > MAX_KEY_LEN {
            errors.push(FieldError::new(
                f("key"),
                format!("must be 1-{MAX_KEY_LEN} letters, digits or _, not starting with a digit; got {key:?}"),
            ));
        } else if !keys.insert(key.clone()) {
            errors.push(FieldError::new(f("key"), format!("{key:?} is declared twice")));
        }
        let kind = match item.kind.as_deref() {
            None => InputType::String,
            Some(t) => InputType::parse(t).unwrap_or_else(|| {
                errors
                    .push(FieldError::new(f("type"), format!("must be string, number, integer or boolean, got {t:?}")));
                InputType::String
            }),
        };
        let explicit = item.target.as_ref().is_some_and(|t| !t.is_empty());
        let target = item.target.filter(|t| !t.is_empty()).unwrap_or_else(|| format!("env.{key}"));
        // A bad key already explains a bad default target.
        let target_ok = (!explicit && !is_identifier(&key))
            || match target.strip_prefix("env.") {
                Some(var) => is_identifier(var),
                None => PARAMETER_TARGETS.contains(&target.as_str()),
            };
        if !target_ok {
            errors.push(FieldError::new(
                f("target"),
                format!("must be env.NAME (a variable name), sshkey, image or tag; got {target:?}"),
            ));
        } else if !targets.insert(target.clone()) {
            errors.push(FieldError::new(f("target"), format!("another input already targets {target}")));
        }
        for (name, text) in
            [("label", &item.label), ("description", &item.description), ("placeholder", &item.placeholder)]
        {
            if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_LEN) {
                errors.push(FieldError::new(f(name), format!("must be at most {MAX_TEXT_LEN} bytes")));
            }
        }
        let options = item.options.unwrap_or_default();
        for (j, o) in options.iter().enumerate() {
            if let Err(m) = kind.text_of(&o.value) {
                errors.push(FieldError::new(f(&format!("options[{j}].value")), m));
            }
        }
        if let Some(d) = &item.default_value
            && let Err(m) = check_value(kind, &options, d)
        {
            errors.push(FieldError::new(f("default_value"), m));
        }
        out.push(RecipeInput {
            key,
            kind,
            label: item.label.filter(|s| !s.is_empty()),
            required: item.required.unwrap_or(false),
            description: item.description.filter(|s| !s.is_empty()),
            placeholder: item.placeholder.filter(|s| !s.is_empty()),
            default_value: item.default_value.filter(|v| !v.is_null()),
            options,
            target,
        });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The text of `value` for an input of `kind` with `options`, or why it is refused.
fn check_value(kind: InputType, options: &[InputOption], value: &Value) -> Result<String, String> {
    let text = kind.text_of(value)?;
    if text.len() > MAX_VALUE_LEN {
        return Err(format!("must be at most {MAX_VALUE_LEN} bytes"));
    }
    if !options.is_empty() && !options.iter().any(|o| &o.value == value) {
        let allowed: Vec<String> = options.iter().map(|o| o.value.to_string()).collect();
        return Err(format!("must be one of {}, got {value}", allowed.join(", ")));
    }
    Ok(text)
}

/// Resolves a cook's `inputs` against `schema`: (target, text) for every input
/// supplied or defaulted, in schema order, or every problem named `inputs.KEY`.
pub fn resolve_inputs(
    schema: &[RecipeInput],
    supplied: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    resolve_inputs_over(schema, supplied, &BTreeSet::new())
}

/// [`resolve_inputs`] for a cook whose override body already set `overridden`
/// targets (`sshkey`, `env.NAME`, ...): an input the cook did not supply in `inputs`
/// whose target the override set counts as supplied (no "is required", and its
/// `default_value` does not overwrite the override). An input supplied in `inputs`
/// still applies, so it wins over the override of the same target.
pub fn resolve_inputs_over(
    schema: &[RecipeInput],
    supplied: &serde_json::Map<String, Value>,
    overridden: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    let mut errors = Vec::new();
    for key in supplied.keys() {
        if !schema.iter().any(|i| &i.key == key) {
            let known: Vec<&str> = schema.iter().map(|i| i.key.as_str()).collect();
            let known = if known.is_empty() { "this recipe takes no inputs".to_string() } else { known.join(", ") };
            errors.push(FieldError::new(format!("inputs.{key}"), format!("unknown input (known: {known})")));
        }
    }
    let mut out = Vec::new();
    for input in schema {
        let field = format!("inputs.{}", input.key);
        if supplied.get(&input.key).is_none_or(|v| v.is_null()) && overridden.contains(&input.target) {
            continue;
        }
        match supplied.get(&input.key).filter(|v| !v.is_null()).or(input.default_value.as_ref()) {
            Some(value) => match check_value(input.kind, &input.options, value) {
                Ok(text) => out.push((input.target.clone(), text)),
                Err(m) => errors.push(FieldError::new(field, m)),
            },
            None if input.required => {
                let what = input.label.as_deref().unwrap_or(&input.key);
                errors.push(FieldError::new(field, format!("is required ({what})")));
            }
            None => {}
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}
