//! Secrets at rest: AES-256-GCM under a key ring.
//!
//! The ring is written `id1:BASE64KEY,id2:BASE64KEY` (`GATEWAY_ENCRYPTION_KEYS`); the first
//! key seals, every key opens, so keys can be rotated without losing data. A sealed value is
//! self-describing: `v1 | len(id) | id | nonce(12) | ciphertext+tag`. Each value is bound to
//! where it is stored (the associated data, e.g. `connections.secrets:<id>`), so a ciphertext
//! copied to another row or column does not open.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, aead};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The encryption keys, the first one active.
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The value names a key that is not in the ring.
    #[error("sealed with key `{0}`, which is not in GATEWAY_ENCRYPTION_KEYS")]
    UnknownKey(String),
    /// The value is damaged, was moved from elsewhere, or the key is wrong.
    #[error("the sealed value is damaged or does not belong here")]
    Corrupt,
}

impl KeyRing {
    /// Parses `id:base64,id:base64`. Each key must decode to 32 bytes; ids must be unique.
    pub fn parse(spec: &SecretString) -> anyhow::Result<Self> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for part in spec
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((id, b64)) = part.split_once(':') else {
                bail!(
                    "each key must be written id:base64 (generate one with `uipath-gateway keys generate`)"
                );
            };
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                bail!("key id `{id}` must be 1-64 letters, digits, `-`, `_` or `.`");
            }
            let bytes = STANDARD.decode(b64).ok().filter(|b| b.len() == 32);
            let Some(bytes) = bytes else {
                bail!("key `{id}` must be 32 bytes, Base64-encoded");
            };
            if keys.iter().any(|(k, _)| k == id) {
                bail!("key id `{id}` appears twice");
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).expect("32 bytes is an AES-256 key");
            keys.push((id.to_string(), cipher));
        }
        if keys.is_empty() {
            bail!("no key given");
        }
        Ok(Self { keys })
    }

    /// A new ring spec with one random key.
    pub fn generate_spec(id: &str) -> SecretString {
        let key: [u8; 32] = rand::rng().random();
        SecretString::from(format!("{id}:{}", STANDARD.encode(key)))
    }

    /// The id of the key that seals.
    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Encrypts `plaintext` with the active key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let (id, cipher) = &self.keys[0];
        let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
        let nonce = <&aead::Nonce<Aes256Gcm>>::try_from(&nonce_bytes[..]).expect("12 bytes");
        let ciphertext = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any value this size");
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// The key id a sealed value names, if it is well formed.
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let (&version, rest) = sealed.split_first()?;
        let (&len, rest) = rest.split_first()?;
        if version != VERSION || rest.len() < len as usize {
            return None;
        }
        std::str::from_utf8(&rest[..len as usize]).ok()
    }

    /// Decrypts a value sealed by any key of the ring with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, OpenError> {
        let id = Self::key_id_of(sealed).ok_or(OpenError::Corrupt)?;
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, c)| c)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let rest = &sealed[2 + id.len()..];
        if rest.len() < NONCE_LEN {
            return Err(OpenError::Corrupt);
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce =
            <&aead::Nonce<Aes256Gcm>>::try_from(nonce_bytes).map_err(|_| OpenError::Corrupt)?;
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Corrupt)
    }

    /// Opens a value sealed under another key (or the same) and seals it under the active key.
    pub fn reseal(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, OpenError> {
        Ok(self.seal(&self.open(sealed, aad)?, aad))
    }
}

/// Reads the key file in `data_dir`, creating it (mode 0600) with one random key if absent.
pub fn load_or_create_key_file(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join("encryption.keys");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(SecretString::from(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let spec = KeyRing::generate_spec(&format!("k{}", chrono::Utc::now().format("%Y%m%d")));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            std::io::Write::write_all(&mut f, spec.expose_secret().as_bytes())?;
            tracing::info!(path = %path.display(), "generated an encryption key file; back it up with the database");
            Ok(spec)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(&SecretString::from(spec.to_string())).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_place() {
        let a = KeyRing::generate_spec("a");
        let r = KeyRing::parse(&a).unwrap();
        let sealed = r.seal(b"client-secret", "connections.secrets:1");
        assert!(!sealed.windows(13).any(|w| w == b"client-secret"));
        assert_eq!(
            r.open(&sealed, "connections.secrets:1").unwrap(),
            b"client-secret"
        );
        assert!(matches!(
            r.open(&sealed, "connections.secrets:2"),
            Err(OpenError::Corrupt)
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            r.open(&flipped, "connections.secrets:1"),
            Err(OpenError::Corrupt)
        ));
        let other = KeyRing::parse(&KeyRing::generate_spec("b")).unwrap();
        assert!(
            matches!(other.open(&sealed, "connections.secrets:1"), Err(OpenError::UnknownKey(id)) if id == "a")
        );
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_reseals_with_the_new_key() {
        let old = KeyRing::generate_spec("old");
        let new = KeyRing::generate_spec("new");
        let before = KeyRing::parse(&old).unwrap().seal(b"pat", "x");
        let both = ring(&format!("{},{}", new.expose_secret(), old.expose_secret()));
        assert_eq!(both.active_id(), "new");
        assert_eq!(both.open(&before, "x").unwrap(), b"pat");
        let after = both.reseal(&before, "x").unwrap();
        assert_eq!(KeyRing::key_id_of(&after), Some("new"));
        assert_eq!(
            KeyRing::parse(&new).unwrap().open(&after, "x").unwrap(),
            b"pat"
        );
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for bad in ["", "nokey", "a:notbase64!", "a:AAAA", "a b:AAAA"] {
            assert!(
                KeyRing::parse(&SecretString::from(bad.to_string())).is_err(),
                "{bad}"
            );
        }
        let k = KeyRing::generate_spec("a");
        let twice = format!("{},{}", k.expose_secret(), k.expose_secret());
        assert!(KeyRing::parse(&SecretString::from(twice)).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key_file(dir.path()).unwrap();
        let second = load_or_create_key_file(dir.path()).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        let mode = std::fs::metadata(dir.path().join("encryption.keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        KeyRing::parse(&first).unwrap();
    }
}
