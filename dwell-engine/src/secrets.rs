//! Secrets at rest: each tenant's webhook secret is sealed (ChaCha20-Poly1305, bound to
//! the tenant's name) with a key kept outside the database — `secrets_key` from the
//! configuration, or `<data>/secrets.key` (mode 0600, made at first start) — so a copy of
//! `dwell.redb` alone reveals none of them. Records written before sealing existed hold
//! the secret in plain text; they are read as they are and sealed at the next start.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const SEALED: &str = "sealed:v1:";
const KEY_FILE: &str = "secrets.key";

/// A new random key written to `path`; its base64.
fn new_key_file(path: &Path) -> Result<String, String> {
    let key: [u8; 32] = rand::random();
    let encoded = b64().encode(key);
    super::write_private(path, encoded.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(encoded)
}

/// Seals and opens secrets with the node's secrets key.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Sealer {
    /// The configured key (base64 of 32 bytes), else the one in `<data>/secrets.key`,
    /// else a new one written there.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Sealer, String> {
        let encoded = match configured {
            Some(k) => k.trim().to_owned(),
            None => {
                let path = data_dir.join(KEY_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
                    // Empty: a kill mid-write before writes were atomic; nothing can
                    // have been sealed with it.
                    Ok(_) => new_key_file(&path)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_key_file(&path)?,
                    Err(e) => return Err(format!("reading {}: {e}", path.display())),
                }
            }
        };
        let key = b64()
            .decode(&encoded)
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or("the secrets key must be the base64 of 32 bytes")?;
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// `secret` sealed for tenant `owner`: `sealed:v1:` + base64(nonce ‖ ciphertext).
    pub fn seal(&self, owner: &str, secret: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: owner.as_bytes(),
                },
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED}{}", b64().encode(out))
    }

    /// The secret in `stored` (sealed for `owner`, or plain text from before sealing).
    pub fn open(&self, owner: &str, stored: &str) -> Result<String, String> {
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_owned());
        };
        let bytes = b64()
            .decode(sealed)
            .ok()
            .filter(|b| b.len() > 12)
            .ok_or("a sealed secret is not base64")?;
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| {
                format!("the secret of tenant {owner:?} does not open with this secrets key")
            })?;
        String::from_utf8(plain).map_err(|_| "a sealed secret is not text".to_owned())
    }

    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_only_with_their_key_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load(None, dir.path()).unwrap();
        let sealed = sealer.seal("acme", "whsec_abc");
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("whsec_abc"));
        assert_eq!(sealer.open("acme", &sealed).unwrap(), "whsec_abc");
        // Bound to its owner: another tenant's record cannot borrow it.
        assert!(sealer.open("evil", &sealed).is_err());
        // The same key file opens it again; another key does not.
        let again = Sealer::load(None, dir.path()).unwrap();
        assert_eq!(again.open("acme", &sealed).unwrap(), "whsec_abc");
        let other = Sealer::load(Some(&b64().encode([7u8; 32])), dir.path()).unwrap();
        assert!(other.open("acme", &sealed).is_err());
        // Plain text from before sealing reads as it is.
        assert_eq!(sealer.open("acme", "whsec_old").unwrap(), "whsec_old");
        assert!(Sealer::load(Some("short"), dir.path()).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_file_left_empty_by_a_kill_is_replaced_and_writes_are_whole() {
        // What a SIGKILL between create and write left before writes were atomic: the
        // next start refused to run ("must be the base64 of 32 bytes").
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "").unwrap();
        let sealer = Sealer::load(None, dir.path()).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(b64().decode(written.trim()).unwrap().len(), 32);
        let sealed = sealer.seal("acme", "s");
        let again = Sealer::load(None, dir.path()).unwrap();
        assert_eq!(again.open("acme", &sealed).unwrap(), "s");
        // Written through a temporary file renamed into place: none is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![KEY_FILE.to_owned()]);
    }
}
