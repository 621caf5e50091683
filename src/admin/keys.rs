//! `mcp-oauth admin keys`: the signing keys' lifecycle (list, make the next one now), and the
//! cipher of the stored keys, which `copy-store` needs too.

use super::{AdminError, KeysCommand, Output, StoredKeysSecret, record, time};
use crate::actors::signing_keys::add_next_key;
use crate::oauth::time::unix_now;
use crate::store::cipher::KeyCipher;
use crate::store::{Change, SharedStore};
use serde_json::json;
use std::time::Duration;

impl KeysCommand {
    /// Lists the keys, or makes the next one.
    pub(super) async fn run(
        self,
        store: &SharedStore,
        data_dir: &std::path::Path,
    ) -> Result<Output, AdminError> {
        match self {
            KeysCommand::List => {
                let now = unix_now();
                let mut keys = store.signing_keys().await?;
                keys.sort_by_key(|k| (k.activates_at, k.created_at));
                let rows = keys
                    .iter()
                    .map(|k| {
                        let status = match (k.retired_at, k.activates_at <= now) {
                            (Some(_), _) => "retired",
                            (None, true) => "signing",
                            (None, false) => "next",
                        };
                        let optional = |t: Option<u64>| t.map_or(String::new(), time);
                        vec![
                            k.kid.clone(),
                            status.into(),
                            time(k.created_at),
                            time(k.activates_at),
                            optional(k.retired_at),
                            optional(k.removes_at),
                        ]
                    })
                    .collect();
                Ok(Output::Table(
                    vec![
                        "kid",
                        "status",
                        "created",
                        "signs_from",
                        "retired",
                        "removed_at",
                    ],
                    rows,
                ))
            }
            KeysCommand::Rotate {
                activate_in,
                key_encryption_secret,
            } => {
                let cipher = key_encryption_secret.cipher(data_dir)?;
                // A key the servers could not open would be published by none of them.
                if let Some(stored) = store.signing_keys().await?.first()
                    && cipher.open(&stored.kid, &stored.encrypted_key).is_err()
                {
                    return Err(AdminError::Refused(
                    "the key-encryption secret does not open the stored keys: give the server's AUTH_SERVER_KEY_ENCRYPTION_SECRET".into(),
                ));
                }
                let key = add_next_key(store, &cipher, Duration::from_secs(activate_in)).await?;
                record(store, Change::KeysChanged).await?;
                Ok(Output::Done(
                    format!(
                        "signing key {} published; it signs from {}",
                        key.kid,
                        time(key.activates_at)
                    ),
                    json!({"kid": key.kid, "signs_from": key.activates_at}),
                ))
            }
        }
    }
}

/// The cipher of the server's stored keys: its `--key-encryption-secret`, or the data directory's
/// secret file (read, never made here: a new secret would open none of the stored keys).
impl StoredKeysSecret {
    pub(super) fn cipher(self, data_dir: &std::path::Path) -> Result<KeyCipher, AdminError> {
        let secret = match self.secret {
            Some(secret) => secret.into_bytes(),
            None if data_dir.join(crate::store::cipher::SECRET_FILE).exists() => {
                crate::store::cipher::secret_from_file(data_dir)?
            }
            None => {
                return Err(AdminError::Refused(format!(
                    "no {} in {}: give the server's AUTH_SERVER_KEY_ENCRYPTION_SECRET",
                    crate::store::cipher::SECRET_FILE,
                    data_dir.display()
                )));
            }
        };
        Ok(KeyCipher::from_secret(&secret)?)
    }
}
