//! Storage blocks: named storage configuration (settings JSON). Secret-looking settings are
//! write-only: they read back as `"********"`, and sending `"********"` back keeps the stored
//! value. A workspace has at most one default block.
use chrono::Utc;
use entity::{storage_blocks, workspaces};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::access::{require_role, Role};
use super::accounts::conflict_or_internal;
use super::validate;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub const NAME_MAX: usize = 100;
pub const KIND_MAX: usize = 100;
pub const SETTINGS_MAX_BYTES: usize = 64 * 1024;
/// What a secret setting reads as, and the value that keeps it on update.
pub const MASK: &str = "********";

const NAME_TAKEN: &str = "a storage block with this name already exists in this workspace";
const SECRET_SUFFIXES: [&str; 4] = ["secret", "password", "token", "key"];

pub struct StorageBlockInput {
    pub name: String,
    pub kind: String,
    pub settings: Value,
    /// `None`: false on create, unchanged on update.
    pub is_default: Option<bool>,
}

/// True for setting names that end (case-insensitively) in secret, password, token or key.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|suffix| key.ends_with(suffix))
}

/// The settings as clients see them: every non-null secret value, at any depth, replaced by
/// `"********"`.
pub fn masked_settings(settings: &Value) -> Value {
    match settings {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let shown = if is_secret_key(key) && !value.is_null() {
                        Value::String(MASK.into())
                    } else {
                        masked_settings(value)
                    };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(masked_settings).collect()),
        other => other.clone(),
    }
}

/// Replaces every secret `"********"` in `new` with the value stored at the same place, so a
/// client can send back what it read. `path` names the field in errors.
fn keep_masked(path: &str, new: Value, stored: Option<&Value>) -> AppResult<Value> {
    match new {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, value) in map {
                let here = format!("{path}.{key}");
                let before = stored.and_then(|s| s.get(&key));
                let kept = if is_secret_key(&key) && value.as_str() == Some(MASK) {
                    match before {
                        Some(v) if !v.is_null() => v.clone(),
                        _ => {
                            return Err(AppError::bad_input(
                                &here,
                                "\"********\" keeps a stored secret, but none is stored here",
                            ))
                        }
                    }
                } else {
                    keep_masked(&here, value, before)?
                };
                out.insert(key, kept);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                keep_masked(&format!("{path}.{i}"), item, stored.and_then(|s| s.get(i)))
            })
            .collect::<AppResult<Vec<_>>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

struct Checked {
    name: String,
    kind: String,
    settings: Value,
}

fn check(input: &StorageBlockInput) -> AppResult<Checked> {
    Ok(Checked {
        name: validate::name("name", &input.name, NAME_MAX)?,
        kind: validate::name("kind", &input.kind, KIND_MAX)?,
        settings: validate::json_object("settings", input.settings.clone(), SETTINGS_MAX_BYTES)?,
    })
}

pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    input: StorageBlockInput,
) -> AppResult<storage_blocks::Model> {
    let checked = check(&input)?;
    let settings = keep_masked("settings", checked.settings, None)?;
    let is_default = input.is_default.unwrap_or(false);
    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, workspace_id, Role::Editor, "workspace").await?;
    let id = Uuid::now_v7();
    if is_default {
        clear_default(&txn, workspace_id, id).await?;
    }
    let now = Utc::now();
    let block = storage_blocks::ActiveModel {
        id: Set(id),
        workspace_id: Set(workspace_id),
        name: Set(checked.name),
        kind: Set(checked.kind),
        settings: Set(settings),
        is_default: Set(is_default),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| conflict_or_internal(e, NAME_TAKEN))?;
    txn.commit().await?;
    Ok(block)
}

/// Replaces name, kind and settings (secrets sent as `"********"` keep their stored value);
/// `isDefault` left out keeps it.
pub async fn update(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    input: StorageBlockInput,
) -> AppResult<storage_blocks::Model> {
    let checked = check(&input)?;
    let txn = state.db.begin_write().await?;
    let block = storage_blocks::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("storage block"))?;
    require_role(
        &txn,
        viewer,
        block.workspace_id,
        Role::Editor,
        "storage block",
    )
    .await?;
    let settings = keep_masked("settings", checked.settings, Some(&block.settings))?;
    if input.is_default == Some(true) {
        clear_default(&txn, block.workspace_id, id).await?;
    }
    let mut row: storage_blocks::ActiveModel = block.into();
    row.name = Set(checked.name);
    row.kind = Set(checked.kind);
    row.settings = Set(settings);
    if let Some(is_default) = input.is_default {
        row.is_default = Set(is_default);
    }
    row.updated_at = Set(Utc::now());
    let block = row
        .update(&txn)
        .await
        .map_err(|e| conflict_or_internal(e, NAME_TAKEN))?;
    txn.commit().await?;
    Ok(block)
}

/// Deletes the block; deployments that used it are left without storage.
pub async fn delete(state: &AppState, viewer: &Viewer, id: Uuid) -> AppResult<Uuid> {
    let txn = state.db.begin_write().await?;
    let block = storage_blocks::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("storage block"))?;
    require_role(
        &txn,
        viewer,
        block.workspace_id,
        Role::Editor,
        "storage block",
    )
    .await?;
    storage_blocks::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(id)
}

/// The workspace's storage blocks by name.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
) -> AppResult<Vec<storage_blocks::Model>> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    Ok(storage_blocks::Entity::find()
        .filter(storage_blocks::Column::WorkspaceId.eq(workspace_id))
        .order_by_asc(storage_blocks::Column::Name)
        .order_by_asc(storage_blocks::Column::Id)
        .all(db)
        .await?)
}

/// Makes room for a new default: clears the flag on every other block of the workspace. The
/// workspace row is locked first (PostgreSQL), so two concurrent "make X default" calls are
/// decided one after the other and never leave two defaults; on SQLite the single writer
/// already serializes them.
async fn clear_default(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    except: Uuid,
) -> AppResult<()> {
    workspaces::Entity::find_by_id(workspace_id)
        .lock_exclusive()
        .one(conn)
        .await?;
    storage_blocks::Entity::update_many()
        .col_expr(
            storage_blocks::Column::IsDefault,
            sea_orm::sea_query::Expr::value(false),
        )
        .filter(storage_blocks::Column::WorkspaceId.eq(workspace_id))
        .filter(storage_blocks::Column::IsDefault.eq(true))
        .filter(storage_blocks::Column::Id.ne(except))
        .exec(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_are_masked_at_any_depth() {
        let settings = json!({
            "bucket": "b",
            "AWS_SECRET": "s",
            "password": "p",
            "apiToken": "t",
            "access_key": "k",
            "nested": {"client_secret": "x", "region": "eu"},
            "list": [{"token": "y", "name": "n"}],
            "unset_key": null
        });
        assert_eq!(
            masked_settings(&settings),
            json!({
                "bucket": "b",
                "AWS_SECRET": MASK,
                "password": MASK,
                "apiToken": MASK,
                "access_key": MASK,
                "nested": {"client_secret": MASK, "region": "eu"},
                "list": [{"token": MASK, "name": "n"}],
                "unset_key": null
            })
        );
    }

    #[test]
    fn sending_the_mask_back_keeps_the_stored_secret() {
        let stored = json!({"password": "p", "nested": {"token": "t", "x": 1}});
        let new = json!({"password": MASK, "nested": {"token": MASK, "x": 2}, "host": "h"});
        assert_eq!(
            keep_masked("settings", new, Some(&stored)).unwrap(),
            json!({"password": "p", "nested": {"token": "t", "x": 2}, "host": "h"})
        );
        let changed = json!({"password": "new"});
        assert_eq!(
            keep_masked("settings", changed, Some(&stored)).unwrap(),
            json!({"password": "new"})
        );
    }

    #[test]
    fn the_mask_without_a_stored_secret_is_rejected() {
        let err = keep_masked("settings", json!({"a": {"token": MASK}}), None).unwrap_err();
        match err {
            AppError::BadInput { field, .. } => assert_eq!(field, "settings.a.token"),
            other => panic!("{other:?}"),
        }
    }
}
