//! HS256 session tokens with `sub`, `iat` and `exp`.
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_seconds: i64,
}

impl SessionKeys {
    pub fn new(secret: &[u8], ttl_seconds: i64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_seconds,
        }
    }

    pub fn issue(&self, account_id: Uuid) -> AppResult<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: account_id,
            iat: now,
            exp: now + self.ttl_seconds,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(AppError::internal)
    }

    /// Accepts only HS256 tokens signed with our secret and not past `exp` (no leeway).
    pub fn verify(&self, token: &str) -> AppResult<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["sub", "exp", "iat"]);
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| AppError::Unauthenticated(format!("invalid session token: {}", e)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// jsonwebtoken 10+ needs a crypto backend feature (`rust_crypto`): without it, it compiles
    /// and then panics at the first encode. This keeps the backend honest.
    #[test]
    fn a_token_round_trips_and_another_secret_is_refused() {
        let keys = SessionKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let id = Uuid::now_v7();
        let token = keys.issue(id).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, id);
        let other = SessionKeys::new(b"another-secret-another-secret-xx", 60);
        assert!(other.verify(&token).is_err());
    }
}
