//! Responses every signed operation can give, added to each operation of the OpenAPI
//! document that does not list them already, so the document is complete: any
//! operation answers 400 for a bad path id, query or body, 401 for a bad signature,
//! 403 for a missing permission or a key used outside its `allowed_ips`, 413 for a body
//! over the limit, 429 over the account's request rate, 414 for a request target and 431 for header fields over the limits.
//! (Schemathesis, run in CI, fails on any status code the document does not list.)

use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

const COMMON: &[(&str, &str)] = &[
    ("400", "Invalid path parameter, query or body; `details` names each field"),
    ("401", "Missing or bad signature"),
    ("403", "The key lacks the permission, or is used outside its allowed_ips"),
    ("413", "Body larger than the server accepts"),
    ("429", "The account's request rate is over its limit; see Retry-After"),
    ("414", "Request target longer than the server reads"),
    ("431", "Header fields larger than the server reads"),
];

/// Adds [`COMMON`] to every operation that lacks one of them.
pub fn add(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            for (code, description) in COMMON {
                operation.responses.responses.entry((*code).to_owned()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                            )
                            .build(),
                    )
                });
            }
        }
    }
}
