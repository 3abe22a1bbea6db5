//! Building and running the application: the listener is bound in `build`, so tests can ask
//! for port 0 and learn the address before serving.
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use entity::settings;
use migration::{Migrator, MigratorTrait};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::db::Db;
use crate::graphql::{build_schema, AppSchema};
use crate::state::AppState;

const JWT_SECRET_KEY: &str = "jwt_secret";
/// How long a stopping server waits for a background step under way (a scheduler step, giving
/// the leader lease up) before it returns anyway.
const SERVICES_STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    schema: AppSchema,
}

impl Application {
    /// Connects, migrates, loads or creates the session secret, and binds the listener.
    pub async fn build(config: Config) -> Result<Self, String> {
        let db = Db::connect(&config.database_url).await?;
        migrate(&db).await?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => stored_jwt_secret(&db).await?,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("FLOWCLOUD_LISTEN: cannot listen on {}: {e}", config.listen))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("FLOWCLOUD_LISTEN: {e}"))?;
        let state = AppState::new(db, config, &secret);
        if let Some(pool) = state.db.postgres_pool() {
            crate::events::replicas::spawn_listener(
                pool.clone(),
                state.events.clone(),
                state.shutdown.subscribe(),
            );
        }
        let schema = build_schema(Some(state.clone()));
        Ok(Self {
            listener,
            address,
            state,
            schema,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and lets the background
    /// services finish the step under way (the leader gives its lease up) before it returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = crate::http::router(self.state.clone(), self.schema.clone());
        // Nagle's algorithm would hold back small responses and websocket frames.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        let services = self
            .state
            .config
            .background_services
            .then(|| crate::services::spawn_all(&self.state));
        tracing::info!("listening on http://{}", self.address);
        let state = self.state.clone();
        let stop = async move {
            shutdown.await;
            // Websockets never finish on their own: tell them to close (1001) so the
            // graceful shutdown can complete while in-flight requests finish.
            let _ = state.shutdown.send(true);
        };
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop)
        .await;
        // Told already when the shutdown future resolved; again in case serving failed.
        let _ = self.state.shutdown.send(true);
        if let Some(mut services) = services {
            let all_stopped = async {
                while let Some(stopped) = services.join_next().await {
                    if let Err(err) = stopped {
                        tracing::error!(error = %err, "a background service failed");
                    }
                }
            };
            if tokio::time::timeout(SERVICES_STOP_WITHIN, all_stopped)
                .await
                .is_err()
            {
                tracing::warn!("background services still busy at shutdown: stopping anyway");
            }
        }
        tracing::info!("server stopped");
        served
    }
}

pub async fn migrate(db: &Db) -> Result<(), String> {
    Migrator::up(db.write(), None)
        .await
        .map_err(|e| format!("DATABASE_URL: migration failed: {e}"))
}

/// The session secret kept in the database, generated on first start so sessions survive
/// restarts. Several replicas starting at once agree on whichever insert won.
async fn stored_jwt_secret(db: &Db) -> Result<Vec<u8>, String> {
    let read = || async {
        settings::Entity::find_by_id(JWT_SECRET_KEY.to_owned())
            .one(db.write())
            .await
            .map_err(|e| format!("DATABASE_URL: cannot read settings: {e}"))
    };
    if let Some(row) = read().await? {
        return hex::decode(row.value).map_err(|_| "stored JWT secret is corrupt".to_owned());
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let inserted = settings::ActiveModel {
        key: Set(JWT_SECRET_KEY.to_owned()),
        value: Set(hex::encode(secret)),
    }
    .insert(db.write())
    .await;
    if inserted.is_ok() {
        return Ok(secret.to_vec());
    }
    match read().await? {
        Some(row) => hex::decode(row.value).map_err(|_| "stored JWT secret is corrupt".to_owned()),
        None => Err("DATABASE_URL: cannot store the generated JWT secret".to_owned()),
    }
}

/// Turns transparent huge pages off for this process, before it allocates much. mimalloc commits
/// its arena up front and asked for huge pages on it: every 2 MiB region the heap touched became
/// resident and was zeroed whole, so an idle server held ~17 MiB more than its heap, and pages
/// the allocator gave back and took again were cleared 2 MiB at a time (a dashboard page cost
/// ~25 % more CPU). The `no_thp` feature stops mimalloc asking; this covers kernels set to give
/// huge pages unasked (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`). An error
/// (an old kernel, a seccomp filter) is not fatal: the process only uses more memory.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag on this process; no memory is touched.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
