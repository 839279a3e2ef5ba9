//! Encryption of secrets the server must be able to read back (API key secrets, which HMAC
//! verification needs in clear, and registry passwords), so a leaked database alone reveals none.
//!
//! XChaCha20-Poly1305: its 24-byte nonce is large enough to pick at random for every value with no
//! counter to persist, and Poly1305 authentication turns a wrong key or a tampered value into an
//! error instead of garbage. Stored form: `"v1:" + base64(nonce || ciphertext)`, the version
//! prefix leaving room for a later key rotation or algorithm change.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::keys::os_random;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a secret or a server key could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text is not in the expected form; the payload says which form was expected.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Authentication failed: the value was encrypted under another server key or was altered.
    #[error("stored secret does not decrypt with this server key (wrong key, or the value was altered)")]
    WrongKeyOrCorrupt,
}

/// Encrypts and decrypts secrets at rest under one 32-byte server key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// Keys for other purposes are derived from the server key ([`SecretBox::derive`]).
    root: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately opaque: this value tends to end up in logged config structs.
        f.write_str("SecretBox { key: <redacted> }")
    }
}

impl SecretBox {
    /// A box using `key` (see [`parse_server_key`] for reading it from configuration).
    pub fn new(key: [u8; 32]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(&Key::from(key)), root: key }
    }

    /// A 32-byte key for `purpose`, derived from the server key (HMAC-SHA256 of the
    /// purpose under it): every instance sharing the server key derives the same one,
    /// and knowing it reveals nothing about the server key or other purposes' keys.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.root).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A fresh random server key from the operating system's RNG.
    pub fn generate_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        os_random(&mut key);
        key
    }

    /// Encrypts `plaintext` with a fresh random nonce, so equal secrets give different texts.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            // Only fails for messages near 256 GiB, far beyond any secret.
            .expect("XChaCha20-Poly1305 encrypts any secret-sized message");
        let mut payload = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(payload))
    }

    /// Decrypts a value produced by [`SecretBox::encrypt`] under the same key.
    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let encoded =
            stored.strip_prefix(PREFIX).ok_or(SecretError::Malformed("stored secret must start with \"v1:\""))?;
        let payload = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Malformed("stored secret must be \"v1:\" followed by standard base64"))?;
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed("stored secret is too short to hold a nonce and a tag"));
        }
        let (nonce, ciphertext) = payload.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| SecretError::Malformed("stored secret is too short to hold a nonce and a tag"))?;
        let plaintext = self.cipher.decrypt(&nonce, ciphertext).map_err(|_| SecretError::WrongKeyOrCorrupt)?;
        // Authenticated, so non-UTF-8 here means it was never produced by `encrypt`.
        String::from_utf8(plaintext).map_err(|_| SecretError::Malformed("decrypted secret is not UTF-8"))
    }
}

/// Reads a server key from configuration: 64 hex characters, or standard base64 of 32 bytes.
/// Surrounding whitespace is ignored.
pub fn parse_server_key(text: &str) -> Result<[u8; 32], SecretError> {
    const EXPECTED: &str =
        "server key must be 64 hex characters or base64 of 32 bytes (e.g. from `openssl rand -hex 32`)";
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| SecretError::Malformed(EXPECTED))?
    } else {
        STANDARD.decode(text).map_err(|_| SecretError::Malformed(EXPECTED))?
    };
    <[u8; 32]>::try_from(bytes).map_err(|_| SecretError::Malformed(EXPECTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_depend_on_the_server_key_and_the_purpose_only() {
        let key = SecretBox::generate_key();
        let (a, b) = (SecretBox::new(key), SecretBox::new(key));
        assert_eq!(a.derive("relay"), b.derive("relay"), "every instance with the key derives alike");
        assert_ne!(a.derive("relay"), a.derive("other"));
        assert_ne!(a.derive("relay"), SecretBox::new(SecretBox::generate_key()).derive("relay"));
        assert_ne!(a.derive("relay"), key, "the server key itself never comes out");
    }

    #[test]
    fn round_trip() {
        let sealed = SecretBox::new(SecretBox::generate_key());
        for secret in ["sk_0123", "", "pässwörd 😀"] {
            let stored = sealed.encrypt(secret);
            assert!(stored.starts_with("v1:"));
            assert!(!stored.contains(secret) || secret.is_empty());
            assert_eq!(sealed.decrypt(&stored).as_deref(), Ok(secret));
        }
    }

    #[test]
    fn same_plaintext_encrypts_differently() {
        let sealed = SecretBox::new([7; 32]);
        assert_ne!(sealed.encrypt("sk_same"), sealed.encrypt("sk_same"));
    }

    #[test]
    fn wrong_key_fails() {
        let stored = SecretBox::new([1; 32]).encrypt("sk_secret");
        assert_eq!(SecretBox::new([2; 32]).decrypt(&stored), Err(SecretError::WrongKeyOrCorrupt));
    }

    #[test]
    fn tampering_fails() {
        let sealed = SecretBox::new([3; 32]);
        let stored = sealed.encrypt("sk_secret");
        let mut payload = STANDARD.decode(&stored[3..]).unwrap();
        for index in [0, NONCE_LEN, payload.len() - 1] {
            payload[index] ^= 1;
            let tampered = format!("v1:{}", STANDARD.encode(&payload));
            assert_eq!(sealed.decrypt(&tampered), Err(SecretError::WrongKeyOrCorrupt), "byte {index}");
            payload[index] ^= 1;
        }
    }

    #[test]
    fn malformed_inputs() {
        let sealed = SecretBox::new([4; 32]);
        for stored in ["", "sk_plain", "v2:AAAA", "v1:not base64!", "v1:AAAA"] {
            assert!(matches!(sealed.decrypt(stored), Err(SecretError::Malformed(_))), "{stored:?}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!("{:?}", SecretBox::new([0xAB; 32]));
        assert!(!text.to_lowercase().contains("ab, ") && !text.contains("171"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn server_key_forms() {
        let key: [u8; 32] = std::array::from_fn(|index| index as u8);
        assert_eq!(parse_server_key(&hex::encode(key)), Ok(key));
        assert_eq!(parse_server_key(&hex::encode_upper(key)), Ok(key));
        assert_eq!(parse_server_key(&format!("  {}\n", STANDARD.encode(key))), Ok(key));
        for bad in ["", "abc", &hex::encode([0u8; 31]), &STANDARD.encode([0u8; 33])] {
            let error = parse_server_key(bad).unwrap_err();
            assert!(error.to_string().contains("64 hex characters or base64 of 32 bytes"), "{bad:?}");
        }
    }
}
