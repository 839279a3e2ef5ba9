//! Relay tokens: what entitles a node to open a tunnel at a relay (issue 14 point 2).
//!
//! The control plane issues them per node in its sync answer (to an agent that asks);
//! relays verify them offline. A token is `v1.<node uuid>.<expiry ms>.<signature>`,
//! the signature an Ed25519 signature (hex) over `gantry-relay-token v1|<node>|<expiry>`
//! by the control plane's relay-token key. That key's seed is derived from the server
//! key, so every instance of one control plane signs alike; relays hold only its
//! **public** half (fetched with their `relay` API key from `GET /v1/relays/token-key`,
//! or handed over in process by `gantry server --relay`). So a relay never sees an API
//! secret, cannot mint tokens, and a token says which node it is for: a node cannot
//! present another's.
//!
//! Choice: a token is valid at every relay of the control plane (the server need not
//! know which relay a node will dial); it expires ([`TOKEN_LIFETIME_MS`]) and agents
//! ask for a fresh one on every sync. A tunnel lives no longer than its token: the
//! relay closes it at the token's expiry unless the agent renewed it on the tunnel
//! first ([`crate::Request::Renew`]; agents renew once less than half of the fresh
//! token's lifetime is left on the old one), so a node taken out of the control plane
//! loses its open tunnel within one token lifetime, not only at its next reconnect.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// How long an issued token is accepted.
pub const TOKEN_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// The purpose the server key derives the signing seed for.
pub const SEED_PURPOSE: &str = "gantry relay token signing key v1";

fn message(node: &str, expires_ms: i64) -> String {
    format!("gantry-relay-token v1|{node}|{expires_ms}")
}

/// Signs relay tokens (the control plane's side).
pub struct Issuer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("public_key", &self.public_key_hex()).finish()
    }
}

impl Issuer {
    /// The issuer whose private key is `seed` (32 bytes, e.g. `SecretBox::derive(SEED_PURPOSE)`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { pair: Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed") }
    }

    /// The public key relays verify with, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// A verifier for this issuer's tokens.
    pub fn verifier(&self) -> Verifier {
        Verifier { public_key: self.pair.public_key().as_ref().to_vec() }
    }

    /// A token for `node` valid until `now_ms + TOKEN_LIFETIME_MS`.
    pub fn issue(&self, node: &str, now_ms: i64) -> String {
        self.issue_until(node, now_ms + TOKEN_LIFETIME_MS)
    }

    /// A token for `node` valid until `expires` (epoch ms).
    pub fn issue_until(&self, node: &str, expires: i64) -> String {
        let signature = self.pair.sign(message(node, expires).as_bytes());
        format!("v1.{node}.{expires}.{}", hex::encode(signature.as_ref()))
    }
}

/// Checks relay tokens (the relay's side).
#[derive(Clone, Debug)]
pub struct Verifier {
    public_key: Vec<u8>,
}

impl Verifier {
    /// A verifier for the public key `hex_key` (as `GET /v1/relays/token-key` gives it).
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let public_key = hex::decode(hex_key.trim()).map_err(|_| "the relay token key is not hex".to_string())?;
        if public_key.len() != 32 {
            return Err(format!("the relay token key has {} bytes, not 32", public_key.len()));
        }
        Ok(Self { public_key })
    }

    /// `Ok` when `token` was issued for `node` by the control plane and has not
    /// expired at `now_ms`; `Err` says why not (sent to the agent).
    pub fn check(&self, node: &str, token: &str, now_ms: i64) -> Result<(), String> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(for_node), Some(expires), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed relay token".into());
        };
        let expires: i64 = expires.parse().map_err(|_| "malformed relay token".to_string())?;
        let signature = hex::decode(signature).map_err(|_| "malformed relay token".to_string())?;
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message(for_node, expires).as_bytes(), &signature)
            .map_err(|_| "the relay token was not issued by this relay's control plane".to_string())?;
        if for_node != node {
            return Err(format!("the relay token is for node {for_node}, not {node}"));
        }
        if expires <= now_ms {
            return Err("the relay token has expired; the agent fetches a new one at its next sync".into());
        }
        Ok(())
    }
}

/// When `token` expires (epoch ms), read without checking its signature: what an
/// agent plans its renewals by and a relay its tunnel's end by, once
/// [`Verifier::check`] has accepted the token. `None` when it is not a token of this
/// form.
pub fn expires_ms(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(_), Some(expires), Some(_), None) => expires.parse().ok(),
        _ => None,
    }
}

/// Now, in epoch ms (for [`Verifier::check`]).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_for_their_node_until_they_expire() {
        let issuer = Issuer::from_seed(&[7; 32]);
        let verifier = Verifier::from_hex(&issuer.public_key_hex()).unwrap();
        let token = issuer.issue("node-a", 1_000);
        verifier.check("node-a", &token, 1_001).unwrap();
        let other = verifier.check("node-b", &token, 1_001).unwrap_err();
        assert!(other.contains("not node-b"), "{other}");
        let late = verifier.check("node-a", &token, 1_000 + TOKEN_LIFETIME_MS).unwrap_err();
        assert!(late.contains("expired"), "{late}");
        // Another control plane's token, and a token whose node was edited.
        let foreign = Issuer::from_seed(&[8; 32]).issue("node-a", 1_000);
        assert!(verifier.check("node-a", &foreign, 1_001).unwrap_err().contains("not issued"));
        let edited = token.replace("node-a", "node-b");
        assert!(verifier.check("node-b", &edited, 1_001).unwrap_err().contains("not issued"));
        for bad in ["", "v1.a.b", "v2.node-a.1.00", "v1.node-a.x.00", "v1.node-a.5.zz"] {
            assert!(verifier.check("node-a", bad, 0).is_err(), "{bad:?}");
        }
        assert!(Verifier::from_hex("abcd").is_err());
        assert_eq!(expires_ms(&token), Some(1_000 + TOKEN_LIFETIME_MS));
        assert_eq!(expires_ms(&issuer.issue_until("node-a", 42)), Some(42));
        assert_eq!(expires_ms("v1.node-a.x.00"), None);
        assert_eq!(expires_ms("good"), None);
    }
}
