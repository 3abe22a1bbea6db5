//! Personal accounts: sign-up, log-in, profile, profile image and API keys.
use chrono::{DateTime, Utc};
use entity::{accounts, api_keys, profile_images};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::validate;
use crate::auth::{api_keys as keys, password, Viewer};
use crate::error::{is_unique_violation, AppError, AppResult};
use crate::state::AppState;

pub const NAME_MAX: usize = 100;
pub const MAX_IMAGE_BYTES: usize = 1024 * 1024;

pub struct SignUp {
    pub email: String,
    pub password: String,
    pub handle: String,
    pub name: String,
}

pub async fn sign_up(state: &AppState, input: SignUp) -> AppResult<(accounts::Model, String)> {
    let email = validate::email("email", &input.email)?;
    validate::password("password", &input.password)?;
    let handle = validate::handle("handle", &input.handle)?;
    let name = validate::name("name", &input.name, NAME_MAX)?;
    let db = state.db.write();
    ensure_email_free(db, &email).await?;
    ensure_handle_free(db, &handle, None).await?;
    let password_hash = password::hash(input.password).await?;
    let now = Utc::now();
    let account = accounts::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email),
        handle: Set(handle),
        name: Set(name),
        password_hash: Set(password_hash),
        image_id: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(|e| conflict_or_internal(e, "an account with this email or handle already exists"))?;
    let token = state.sessions.issue(account.id)?;
    Ok((account, token))
}

pub async fn log_in(
    state: &AppState,
    email: &str,
    password_attempt: String,
    client: Option<&str>,
) -> AppResult<(accounts::Model, String)> {
    let email = email.trim().to_lowercase();
    let mut throttle_keys = vec![format!("email:{email}")];
    if let Some(addr) = client {
        throttle_keys.push(format!("addr:{addr}"));
    }
    if let Some(wait) = state.login_throttle.blocked_for(&throttle_keys) {
        return Err(AppError::RateLimited {
            message: format!("too many failed log-ins; try again in {wait} s"),
            retry_after_seconds: wait,
        });
    }
    let account = accounts::Entity::find()
        .filter(accounts::Column::Email.eq(email.as_str()))
        .one(state.db.read())
        .await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let ok = password::verify(password_attempt, stored).await?;
    match account {
        Some(account) if ok => {
            state.login_throttle.record_success(&throttle_keys[..1]);
            let token = state.sessions.issue(account.id)?;
            Ok((account, token))
        }
        _ => {
            state.login_throttle.record_failure(&throttle_keys);
            Err(AppError::Unauthenticated(
                "invalid email or password".into(),
            ))
        }
    }
}

pub async fn get(state: &AppState, id: Uuid) -> AppResult<accounts::Model> {
    accounts::Entity::find_by_id(id)
        .one(state.db.read())
        .await?
        .ok_or_else(|| AppError::not_found("account"))
}

pub struct ProfileUpdate {
    pub handle: Option<String>,
    pub name: Option<String>,
}

pub async fn update_profile(
    state: &AppState,
    viewer: &Viewer,
    input: ProfileUpdate,
) -> AppResult<accounts::Model> {
    let handle = input
        .handle
        .as_deref()
        .map(|h| validate::handle("handle", h))
        .transpose()?;
    let name = input
        .name
        .as_deref()
        .map(|n| validate::name("name", n, NAME_MAX))
        .transpose()?;
    let txn = state.db.begin_write().await?;
    let account = crate::auth::viewer::account_of(&txn, viewer).await?;
    if let Some(handle) = &handle {
        ensure_handle_free(&txn, handle, Some(account.id)).await?;
    }
    let mut active: accounts::ActiveModel = account.into();
    if let Some(handle) = handle {
        active.handle = Set(handle);
    }
    if let Some(name) = name {
        active.name = Set(name);
    }
    active.updated_at = Set(Utc::now());
    let account = active
        .update(&txn)
        .await
        .map_err(|e| conflict_or_internal(e, "this handle is taken"))?;
    txn.commit().await?;
    Ok(account)
}

/// Image types recognised by their leading bytes, never by what the client claims.
pub fn sniff_image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

pub async fn set_profile_image(
    state: &AppState,
    viewer: &Viewer,
    bytes: Vec<u8>,
) -> AppResult<accounts::Model> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(AppError::bad_input("image", "must be at most 1 MiB"));
    }
    let content_type = sniff_image_type(&bytes)
        .ok_or_else(|| AppError::bad_input("image", "must be a PNG, JPEG, WebP or GIF image"))?;
    let txn = state.db.begin_write().await?;
    let account = crate::auth::viewer::account_of(&txn, viewer).await?;
    let image_id = Uuid::now_v7();
    let now = Utc::now();
    profile_images::ActiveModel {
        id: Set(image_id),
        account_id: Set(account.id),
        content_type: Set(content_type.to_owned()),
        data: Set(bytes),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    // One image per account: the previous one is no longer served.
    profile_images::Entity::delete_many()
        .filter(profile_images::Column::AccountId.eq(account.id))
        .filter(profile_images::Column::Id.ne(image_id))
        .exec(&txn)
        .await?;
    let mut active: accounts::ActiveModel = account.into();
    active.image_id = Set(Some(image_id));
    active.updated_at = Set(now);
    let account = active.update(&txn).await?;
    txn.commit().await?;
    Ok(account)
}

pub async fn profile_image(
    state: &AppState,
    image_id: Uuid,
) -> AppResult<Option<profile_images::Model>> {
    Ok(profile_images::Entity::find_by_id(image_id)
        .one(state.db.read())
        .await?)
}

pub async fn create_api_key(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> AppResult<(api_keys::Model, String)> {
    let name = validate::name("name", name, NAME_MAX)?;
    let now = Utc::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::bad_input("expiresAt", "must be in the future"));
    }
    crate::auth::viewer::account_of(state.db.read(), viewer).await?;
    let generated = keys::generate();
    let key = api_keys::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(viewer.account_id),
        name: Set(name),
        prefix: Set(generated.prefix),
        secret_hash: Set(generated.hash),
        created_at: Set(now),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(state.db.write())
    .await?;
    Ok((key, generated.secret))
}

pub async fn revoke_api_key(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<api_keys::Model> {
    let txn = state.db.begin_write().await?;
    let key = api_keys::Entity::find_by_id(id)
        .filter(api_keys::Column::AccountId.eq(viewer.account_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("API key"))?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let mut active: api_keys::ActiveModel = key.into();
    active.revoked_at = Set(Some(Utc::now()));
    let key = active.update(&txn).await?;
    txn.commit().await?;
    crate::events::access_changed(state, Some(viewer.account_id)).await;
    Ok(key)
}

pub async fn list_api_keys(state: &AppState, account_id: Uuid) -> AppResult<Vec<api_keys::Model>> {
    Ok(api_keys::Entity::find()
        .filter(api_keys::Column::AccountId.eq(account_id))
        .order_by_desc(api_keys::Column::CreatedAt)
        .all(state.db.read())
        .await?)
}

async fn ensure_email_free(conn: &impl sea_orm::ConnectionTrait, email: &str) -> AppResult<()> {
    let taken = accounts::Entity::find()
        .filter(accounts::Column::Email.eq(email))
        .one(conn)
        .await?
        .is_some();
    if taken {
        return Err(AppError::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    Ok(())
}

async fn ensure_handle_free(
    conn: &impl sea_orm::ConnectionTrait,
    handle: &str,
    except: Option<Uuid>,
) -> AppResult<()> {
    let holder = accounts::Entity::find()
        .filter(accounts::Column::Handle.eq(handle))
        .one(conn)
        .await?;
    match holder {
        Some(a) if Some(a.id) != except => Err(AppError::Conflict("this handle is taken".into())),
        _ => Ok(()),
    }
}

/// A unique violation means a concurrent request won the race: `CONFLICT`, not an internal error.
pub fn conflict_or_internal(err: sea_orm::DbErr, message: &str) -> AppError {
    if is_unique_violation(&err) {
        AppError::Conflict(message.to_owned())
    } else {
        AppError::internal(err)
    }
}
