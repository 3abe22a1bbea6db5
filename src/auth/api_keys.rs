//! API keys: `fc_<prefix>_<secret>`. The prefix finds the row; only a SHA-256 of the whole key
//! is stored, and it is compared in constant time.
use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "fc_";
const PREFIX_LEN: usize = 12;
const SECRET_LEN: usize = 40;

pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn generate() -> GeneratedKey {
    let mut rng = rand::rngs::OsRng;
    let prefix: String = (&mut rng)
        .sample_iter(&Alphanumeric)
        .take(PREFIX_LEN)
        .map(char::from)
        .collect();
    let secret_part: String = (&mut rng)
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let secret = format!("{KEY_PREFIX}{prefix}_{secret_part}");
    let hash = hash(&secret);
    GeneratedKey {
        secret,
        prefix,
        hash,
    }
}

pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

/// The lookup prefix of a presented key, if it is shaped like one of ours.
pub fn prefix_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == PREFIX_LEN && secret.len() == SECRET_LEN).then_some(prefix)
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn matches(presented: &str, stored_hash: &str) -> bool {
    hash(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}
