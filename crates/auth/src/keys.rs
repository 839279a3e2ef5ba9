//! Random identifiers for authentication: per-request nonces and API key pairs.

use rand::rngs::SysRng;
use rand::{Rng, rand_core::UnwrapErr};

/// 16 random bytes as 32 lower-case hex chars: the `X-Nonce` format upstream clients send.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    // The thread RNG is a CSPRNG reseeded from the OS; nonces need uniqueness, not secrecy,
    // and are made per request, so skipping a syscall each time is worth it.
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new API key pair: (`"pk_"` + 32 lower-case hex, `"sk_"` + 64 lower-case hex), both from
/// the operating system's RNG.
pub fn generate_key_pair() -> (String, String) {
    let mut public = [0u8; 16];
    let mut secret = [0u8; 32];
    os_random(&mut public);
    os_random(&mut secret);
    (format!("pk_{}", hex::encode(public)), format!("sk_{}", hex::encode(secret)))
}

/// Fills `bytes` straight from the OS for long-lived key material. Panics only if the OS has
/// no entropy source, in which case no key we could make would be safe anyway.
pub(crate) fn os_random(bytes: &mut [u8]) {
    UnwrapErr(SysRng).fill_bytes(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_lower_hex(text: &str) -> bool {
        text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn nonce_is_32_lower_hex_and_fresh() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_eq!(a.len(), 32);
        assert!(is_lower_hex(&a));
        assert_ne!(a, b);
        assert!(crate::nonce_is_well_formed(&a));
    }

    #[test]
    fn key_pair_shapes() {
        let (public, secret) = generate_key_pair();
        let public_hex = public.strip_prefix("pk_").unwrap();
        let secret_hex = secret.strip_prefix("sk_").unwrap();
        assert_eq!((public_hex.len(), secret_hex.len()), (32, 64));
        assert!(is_lower_hex(public_hex) && is_lower_hex(secret_hex));
        assert_ne!(generate_key_pair().1, secret);
    }
}
