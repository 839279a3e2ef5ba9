//! Canonical renderings of the signed parts of a request: the query string and the JSON body.
//!
//! Signing only works if client and server derive byte-identical text from the same request.
//! The upstream contract names the rules loosely and its clients implement them differently, so
//! each renderer here takes the variant as a parameter and the `*_candidates` functions list
//! every variant a legitimate client may have used.

mod body;
mod json;
mod number;
mod query;

pub use body::{body_hash_candidates, sha256_hex};
pub use json::{JsonStyle, canonical_json};
pub use query::{canonical_query, query_candidates};
