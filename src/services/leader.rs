//! Leader election with a lease row (works on SQLite and PostgreSQL alike): every replica runs
//! the services, but only the holder of an unexpired lease acts. The holder renews it well
//! before it expires; if the leader dies, another replica takes the lease once it expires.
use chrono::{DateTime, Duration, Utc};
use entity::leases;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use crate::error::AppResult;
use crate::state::AppState;

pub const LEASE_NAME: &str = "services";

/// Takes or renews the lease for `holder`; true when `holder` is the leader until
/// `now + ttl`.
pub async fn try_acquire(
    state: &AppState,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let txn = state.db.begin_write().await?;
    let expires_at = now + ttl;
    let renewed = leases::Entity::update_many()
        .col_expr(leases::Column::Holder, holder.into())
        .col_expr(leases::Column::ExpiresAt, expires_at.into())
        .filter(leases::Column::Name.eq(LEASE_NAME))
        .filter(
            sea_orm::Condition::any()
                .add(leases::Column::Holder.eq(holder))
                .add(leases::Column::ExpiresAt.lt(now)),
        )
        .exec(&txn)
        .await?
        .rows_affected;
    let leader = if renewed > 0 {
        true
    } else {
        let inserted = leases::Entity::insert(leases::ActiveModel {
            name: Set(LEASE_NAME.to_owned()),
            holder: Set(holder.to_owned()),
            expires_at: Set(expires_at),
        })
        .on_conflict(
            OnConflict::column(leases::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        inserted > 0
    };
    txn.commit().await?;
    Ok(leader)
}

/// Gives the lease up (on shutdown), so another replica can take over at once.
pub async fn release(state: &AppState, holder: &str) -> AppResult<()> {
    leases::Entity::delete_many()
        .filter(leases::Column::Name.eq(LEASE_NAME))
        .filter(leases::Column::Holder.eq(holder))
        .exec(state.db.write())
        .await?;
    Ok(())
}

/// The current holder, for tests and diagnostics.
pub async fn holder(state: &AppState, now: DateTime<Utc>) -> AppResult<Option<String>> {
    Ok(leases::Entity::find_by_id(LEASE_NAME.to_owned())
        .one(state.db.read())
        .await?
        .filter(|l| l.expires_at > now)
        .map(|l| l.holder))
}
