//! Who is calling: resolved once per request (or websocket) from the bearer token.
use chrono::{Duration, Utc};
use entity::{accounts, api_keys};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::api_keys as keys;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// How the viewer proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Session,
    ApiKey(Uuid),
}

/// The account a request acts for. A session names its account in its signed token and is
/// taken at its word until it expires: no statement per request to look the account up (the
/// product deletes no accounts; one removed by hand loses its memberships with it, so it can
/// reach no workspace, and whatever reads the account row itself answers `UNAUTHENTICATED`).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub account_id: Uuid,
    pub credential: Credential,
}

/// The outcome of authenticating a request. An invalid token is kept (not treated as anonymous)
/// so that the caller learns why with `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub enum Auth {
    Anonymous,
    Invalid(String),
    Viewer(Viewer),
}

impl Auth {
    pub fn viewer(&self) -> AppResult<&Viewer> {
        match self {
            Auth::Viewer(v) => Ok(v),
            Auth::Anonymous => Err(AppError::unauthenticated()),
            Auth::Invalid(reason) => Err(AppError::Unauthenticated(reason.clone())),
        }
    }
}

/// `lastUsedAt` is refreshed at most this often, so a busy agent does not write on every call.
const LAST_USED_GRANULARITY: Duration = Duration::seconds(30);

/// Authenticates an `Authorization` header value (`Bearer <token>`; the bare token is accepted too).
pub async fn authenticate(state: &AppState, header: Option<&str>) -> Auth {
    let Some(raw) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Auth::Anonymous;
    };
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    match authenticate_token(state, token).await {
        Ok(viewer) => Auth::Viewer(viewer),
        Err(AppError::Unauthenticated(reason)) => Auth::Invalid(reason),
        Err(other) => Auth::Invalid(other.public_message()),
    }
}

pub async fn authenticate_token(state: &AppState, token: &str) -> AppResult<Viewer> {
    if keys::looks_like_key(token) {
        return authenticate_api_key(state, token).await;
    }
    let claims = state.sessions.verify(token)?;
    Ok(Viewer {
        account_id: claims.sub,
        credential: Credential::Session,
    })
}

/// The viewer's account row; `UNAUTHENTICATED` if it is gone.
pub async fn account_of(
    conn: &impl sea_orm::ConnectionTrait,
    viewer: &Viewer,
) -> AppResult<accounts::Model> {
    accounts::Entity::find_by_id(viewer.account_id)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::Unauthenticated("account no longer exists".into()))
}

async fn authenticate_api_key(state: &AppState, token: &str) -> AppResult<Viewer> {
    let invalid = || AppError::Unauthenticated("invalid API key".into());
    let prefix = keys::prefix_of(token).ok_or_else(invalid)?;
    // The key and its account in one statement: every agent request starts here.
    let (key, account) = api_keys::Entity::find()
        .filter(api_keys::Column::Prefix.eq(prefix))
        .find_also_related(accounts::Entity)
        .one(state.db.read())
        .await?
        .ok_or_else(invalid)?;
    if !keys::matches(token, &key.secret_hash) {
        return Err(invalid());
    }
    let key_id = key.id;
    let now = Utc::now();
    if key.revoked_at.is_some() {
        return Err(AppError::Unauthenticated("API key has been revoked".into()));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::Unauthenticated("API key has expired".into()));
    }
    let account = account.ok_or_else(invalid)?;
    if key
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_GRANULARITY)
    {
        let mut active: api_keys::ActiveModel = key.into();
        active.last_used_at = Set(Some(now));
        if let Err(err) = active.update(state.db.write()).await {
            // Bookkeeping only: the request still goes through.
            tracing::warn!(%key_id, error = %err, "could not record API key use");
        }
    }
    Ok(Viewer {
        account_id: account.id,
        credential: Credential::ApiKey(key_id),
    })
}

/// Whether the credential behind a viewer still works (for long-lived subscriptions).
pub async fn still_valid(state: &AppState, viewer: &Viewer) -> AppResult<bool> {
    let account = accounts::Entity::find_by_id(viewer.account_id)
        .one(state.db.read())
        .await?;
    if account.is_none() {
        return Ok(false);
    }
    match viewer.credential {
        Credential::Session => Ok(true),
        Credential::ApiKey(id) => {
            let key = api_keys::Entity::find_by_id(id)
                .one(state.db.read())
                .await?;
            Ok(key.is_some_and(|k| {
                k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > Utc::now())
            }))
        }
    }
}
