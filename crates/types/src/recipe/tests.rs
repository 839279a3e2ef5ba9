//! Unit tests of job recipes: request checks, the input schema and how inputs resolve,
//! and cooking (the merge of a cook body over a template).

use serde_json::{Value, json};

use super::cook::cook_body;
use super::inputs::{RecipeInputRequest, resolve_inputs, validate_input_schema};
use super::*;

fn template(extra_docker: Value) -> JobTemplate {
    let mut docker = json!({"image": "reg.example/app", "tag": "v1", "host": "reg.example", "user": "bot",
                            "secret": "s3cret", "ports": [22, 8080], "env": {"A": "1", "B": "2"}});
    docker.as_object_mut().unwrap().extend(extra_docker.as_object().unwrap().clone());
    payload(json!({"title": "t", "task": "BATCH", "max_timeout_run_ms": 600000, "gpu_count": 1, "gpu_name": "RTX 4090",
                   "parameters": {"type": "docker", "parameters": docker}}))
    .unwrap()
}

fn cook(t: &JobTemplate, body: Value, schema: &[RecipeInput]) -> Result<Value, Vec<FieldError>> {
    cook_body(t, serde_json::from_value(body).unwrap(), schema)
}

fn inputs(items: Value) -> Vec<RecipeInput> {
    validate_input_schema(serde_json::from_value::<Vec<RecipeInputRequest>>(items).unwrap()).unwrap()
}

fn fields(e: Vec<FieldError>) -> Vec<String> {
    e.into_iter().map(|e| e.field).collect()
}

#[test]
fn an_empty_body_cooks_the_template_as_is() {
    let t = template(json!({}));
    assert_eq!(cook(&t, json!({}), &[]).unwrap(), serde_json::to_value(&t).unwrap());
}

#[test]
fn top_level_fields_replace_and_null_removes() {
    let t = template(json!({}));
    let out = cook(
        &t,
        json!({"title": "mine", "task": "PERSISTENT", "max_timeout_run_ms": null, "gpu_name": null,
                              "allowed_region_codes": ["eu-west-1"]}),
        &[],
    )
    .unwrap();
    assert_eq!((out["title"].as_str(), out["task"].as_str()), (Some("mine"), Some("PERSISTENT")));
    assert!(out["max_timeout_run_ms"].is_null() && out["gpu_name"].is_null());
    assert_eq!(out["allowed_region_codes"], json!(["eu-west-1"]));
    assert_eq!(out["gpu_count"], json!(1), "untouched fields stay");
}

#[test]
fn docker_parameters_and_env_merge_key_by_key() {
    let t = template(json!({}));
    let out = cook(
        &t,
        json!({"parameters": {"parameters": {"tag": "v2", "ports": [9000],
                                                              "env": {"B": "20", "C": "3", "A": null}}}}),
        &[],
    )
    .unwrap();
    let d = &out["parameters"]["parameters"];
    assert_eq!((d["image"].as_str(), d["tag"].as_str()), (Some("reg.example/app"), Some("v2")));
    assert_eq!(d["ports"], json!([9000]), "lists replace whole");
    assert_eq!(d["env"], json!({"B": "20", "C": "3"}));
    assert_eq!(d["secret"], "s3cret", "same image and host: the credentials stay");
    assert_eq!(out["parameters"]["type"], "docker");
}

#[test]
fn credentials_stay_with_their_image() {
    let t = template(json!({}));
    let out = cook(&t, json!({"parameters": {"parameters": {"image": "reg.example/other"}}}), &[]).unwrap();
    let d = &out["parameters"]["parameters"];
    assert!(d.get("secret").is_none() && d.get("user").is_none(), "{d}");
    let own =
        cook(&t, json!({"parameters": {"parameters": {"host": "x.example", "user": "me", "secret": "mine"}}}), &[])
            .unwrap();
    assert_eq!(own["parameters"]["parameters"]["secret"], "mine");
}

#[test]
fn malformed_overrides_are_named() {
    let t = template(json!({}));
    assert_eq!(fields(cook(&t, json!({"parameters": 3}), &[]).unwrap_err()), ["parameters"]);
    assert_eq!(
        fields(cook(&t, json!({"parameters": {"parameters": []}}), &[]).unwrap_err()),
        ["parameters.parameters"]
    );
}

#[test]
fn inputs_land_on_their_targets_after_overrides() {
    let t = template(json!({}));
    let schema = inputs(json!([
        {"key": "sshkey", "required": true, "target": "sshkey"},
        {"key": "EPOCHS", "type": "integer", "default_value": 3},
        {"key": "mode", "options": [{"label": "Fast", "value": "fast"}, {"label": "Slow", "value": "slow"}],
         "target": "env.MODE"},
        {"key": "debug", "type": "boolean"},
    ]));
    let out = cook(
        &t,
        json!({"inputs": {"sshkey": "ssh-ed25519 AAA", "mode": "slow", "debug": true},
                              "parameters": {"parameters": {"env": {"MODE": "overridden"}}}}),
        &schema,
    )
    .unwrap();
    let d = &out["parameters"]["parameters"];
    assert_eq!(d["sshkey"], "ssh-ed25519 AAA");
    assert_eq!(d["env"]["EPOCHS"], "3", "defaults apply");
    assert_eq!(d["env"]["MODE"], "slow", "inputs win over env overrides");
    assert_eq!(d["env"]["debug"], "true");

    let e = cook(&t, json!({"inputs": {"mode": "medium", "nope": 1, "EPOCHS": 1.5}}), &schema).unwrap_err();
    let mut f = fields(e);
    f.sort();
    assert_eq!(f, ["inputs.EPOCHS", "inputs.mode", "inputs.nope", "inputs.sshkey"]);
}

#[test]
fn input_schemas_are_checked() {
    let bad: Vec<RecipeInputRequest> = serde_json::from_value(json!([
        {"key": "1x"},
        {"key": "a", "type": "colour"},
        {"key": "b", "target": "cmd"},
        {"key": "c", "type": "number", "default_value": "x"},
        {"key": "d", "target": "env.D2"},
        {"key": "d", "target": "env.D2"},
    ]))
    .unwrap();
    let f = fields(validate_input_schema(bad).unwrap_err());
    assert_eq!(
        f,
        [
            "input_schema[0].key",
            "input_schema[1].type",
            "input_schema[2].target",
            "input_schema[3].default_value",
            "input_schema[5].key",
            "input_schema[5].target",
        ]
    );
    assert!(resolve_inputs(&[], &serde_json::Map::new()).unwrap().is_empty());
}

#[test]
fn recipe_requests_are_checked_with_payload_fields_prefixed() {
    let e = validate_recipe_request(
        RecipeRequest {
            name: Some(" ".into()),
            visibility: Some("SECRET".into()),
            payload: Some(json!({"title": "t", "task": "BATCH", "parameters": {"parameters": {}}})),
            thumbnail_url: Some("ftp://x".into()),
            ..Default::default()
        },
        true,
    )
    .unwrap_err();
    assert_eq!(
        fields(e),
        ["name", "thumbnail_url", "visibility", "payload.max_timeout_run_ms", "payload.parameters.parameters.image"]
    );
    let e = validate_recipe_request(RecipeRequest::default(), true).unwrap_err();
    assert_eq!(fields(e), ["name", "payload"]);
    let ok = validate_recipe_request(RecipeRequest { description: Some(String::new()), ..Default::default() }, false);
    assert_eq!(ok.unwrap().description, Some(None), "\"\" clears on update");
}

#[test]
fn visibility_rule_and_filters() {
    use crate::AccountId;
    let (me, you) = (AccountId::new(), AccountId::new());
    let v = RecipeVisibility::parse;
    assert!(is_visible(Some(me), v("archived").unwrap(), false, Some(me)));
    assert!(!is_visible(Some(you), RecipeVisibility::Private, false, Some(me)));
    assert!(is_visible(Some(you), RecipeVisibility::Public, false, Some(me)));
    assert!(is_visible(None, RecipeVisibility::Private, true, Some(me)), "official is public");
    assert!(!is_visible(None, RecipeVisibility::Archived, true, Some(me)));
    assert!(is_visible(Some(you), RecipeVisibility::Archived, false, None), "operators see all");

    let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    assert_eq!(parse_recipe_filter(&q("filter[is_official]", "true")).unwrap().is_official, Some(true));
    assert_eq!(
        parse_recipe_filter(&q("filter[visibility]", "public,PRIVATE")).unwrap().visibilities,
        [RecipeVisibility::Public, RecipeVisibility::Private]
    );
    assert_eq!(fields(parse_recipe_filter(&q("filter[visibility]", "HIDDEN")).unwrap_err()), ["filter[visibility]"]);
    assert_eq!(fields(parse_recipe_filter(&q("filter[colour]", "x")).unwrap_err()), ["filter[colour]"]);
}

#[test]
fn override_targets_count_as_supplied_inputs() {
    let t = template(json!({}));
    let schema = inputs(json!([
        {"key": "sshkey", "required": true, "target": "sshkey"},
        {"key": "message", "default_value": "hello", "target": "env.MESSAGE"},
    ]));
    // Upstream's shape: the override inside the job shape satisfies the required input.
    let out =
        cook(&t, json!({"parameters": {"parameters": {"sshkey": "ssh-ed25519 K", "env": {"MESSAGE": "hi"}}}}), &schema)
            .unwrap();
    let d = &out["parameters"]["parameters"];
    assert_eq!((d["sshkey"].as_str(), d["env"]["MESSAGE"].as_str()), (Some("ssh-ed25519 K"), Some("hi")));
    // The flattened shape too; `parameters.parameters` wins over it on a clash.
    let out = cook(
        &t,
        json!({"parameters": {"sshkey": "flat", "env": {"MESSAGE": "flat", "X": "1"},
                              "parameters": {"env": {"MESSAGE": "nested"}}}}),
        &schema,
    )
    .unwrap();
    let d = &out["parameters"]["parameters"];
    assert_eq!(
        (d["sshkey"].as_str(), d["env"]["MESSAGE"].as_str(), d["env"]["X"].as_str()),
        (Some("flat"), Some("nested"), Some("1"))
    );
    // Both styles mixed: an explicit input wins over the override of its target.
    let out =
        cook(&t, json!({"parameters": {"parameters": {"sshkey": "override"}}, "inputs": {"sshkey": "input"}}), &schema)
            .unwrap();
    assert_eq!(out["parameters"]["parameters"]["sshkey"], json!("input"));
    // An empty override is not a value: still required.
    let e = cook(&t, json!({"parameters": {"parameters": {"sshkey": ""}}}), &schema).unwrap_err();
    assert_eq!(fields(e), ["inputs.sshkey"]);
}
