//! Request authentication for Gantry, kept free of IO so the server, the client and the tests
//! all sign and verify with literally the same code.
//!
//! The wire contract is API.md §5 (HMAC-SHA256 over
//! `pk|ts|nonce|METHOD|path|query|bodySha256`). Clients in the wild disagree on small encoding
//! details (query `+` vs `%20`, `\uXXXX` vs raw UTF-8, `1` vs `1.0`), so the verifying side
//! computes every rendering a legitimate client may have signed ([`query_candidates`],
//! [`body_hash_candidates`]) and accepts a signature matching any of them ([`verify_any`]).
//!
//! Besides signing, the crate holds the other pure pieces of request admission: the clock-skew
//! rule ([`check_timestamp`]), replay protection ([`NonceCache`]), IP allow-lists
//! ([`parse_allow_list`], [`ip_allowed`]) and encryption of secrets at rest ([`SecretBox`]).
//! Nothing here reads the clock: callers pass `now_ms`.

mod canonical;
mod ip;
mod keys;
mod nonce;
mod secret_box;
mod signing;
mod timestamp;

pub use canonical::{JsonStyle, body_hash_candidates, canonical_json, canonical_query, query_candidates, sha256_hex};
pub use ip::{allow_list_within, ip_allowed, is_internal, parse_allow_list};
pub use keys::{generate_key_pair, new_nonce};
pub use nonce::{NonceCache, NonceError, nonce_is_well_formed};
pub use secret_box::{SecretBox, SecretError, parse_server_key};
pub use signing::{SignedRequest, canonical_string, sign, sign_bytes, sign_request, verify_any};
pub use timestamp::{TimestampError, check_timestamp};

/// SHA-256 of the empty string: the `bodySha256` part for requests without a body (API.md §5.2).
pub const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How far `X-Time` may be from the server clock, either way (±5 minutes, API.md §5.4).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
