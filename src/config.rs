//! Typed configuration from the environment (or `serve` flags), validated at start.
use std::net::SocketAddr;

use clap::Args;

/// Everything `serve` reads. Each field is also a `--flag`; the environment is the usual source.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// SQLite file (embedded default) or postgres://… URL.
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "DATABASE_URL", default_value = "sqlite://flowcloud.db?mode=rwc", value_parser = parse_database_url)]
    pub database_url: String,

    /// Address to serve on; `:0` or `HOST:0` picks a free port.
    #[arg(long, global = true, env = "FLOWCLOUD_LISTEN", value_name = "FLOWCLOUD_LISTEN", default_value = "127.0.0.1:4200", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Secret for session tokens; generated on first start and kept in the database when unset.
    #[arg(long, global = true, env = "FLOWCLOUD_JWT_SECRET", value_name = "FLOWCLOUD_JWT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub jwt_secret: Option<String>,

    /// Seconds past its expected start after which a scheduled run becomes `Late`.
    #[arg(long, global = true, env = "FLOWCLOUD_LATE_AFTER_SECONDS", value_name = "FLOWCLOUD_LATE_AFTER_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub late_after_seconds: u32,

    /// Workspaces one account may own.
    #[arg(
        long,
        env = "FLOWCLOUD_MAX_WORKSPACES_PER_ACCOUNT",
        value_name = "FLOWCLOUD_MAX_WORKSPACES_PER_ACCOUNT",
        default_value_t = 1
    )]
    pub max_workspaces_per_account: u32,

    /// Collaborators (pending invitations included) per workspace.
    #[arg(
        long,
        env = "FLOWCLOUD_MAX_COLLABORATORS_PER_WORKSPACE",
        value_name = "FLOWCLOUD_MAX_COLLABORATORS_PER_WORKSPACE",
        default_value_t = 3
    )]
    pub max_collaborators_per_workspace: u32,

    /// Tracing filter (e.g. `info`, `flowcloud=debug`).
    #[arg(
        long,
        env = "FLOWCLOUD_LOG",
        value_name = "FLOWCLOUD_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// Lifetime of a session token in seconds.
    #[arg(long, global = true, env = "FLOWCLOUD_SESSION_TTL_SECONDS", value_name = "FLOWCLOUD_SESSION_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(u32).range(60..))]
    pub session_ttl_seconds: u32,

    /// Allowed CORS origins, comma-separated, or `*` for any.
    #[arg(
        long,
        env = "FLOWCLOUD_CORS_ORIGINS",
        value_name = "FLOWCLOUD_CORS_ORIGINS",
        default_value = "*"
    )]
    pub cors_origins: String,

    /// Base URL the GraphiQL page loads its scripts and styles from (an offline site serves its own copy).
    #[arg(long, global = true, env = "FLOWCLOUD_GRAPHIQL_ASSETS_URL", value_name = "FLOWCLOUD_GRAPHIQL_ASSETS_URL", default_value = "https://unpkg.com", value_parser = parse_http_url)]
    pub graphiql_assets_url: String,

    /// Largest request body in bytes (uploads are capped at 1 MiB separately). Big enough for a
    /// 10,000-line `createLogs` batch.
    #[arg(long, global = true, env = "FLOWCLOUD_MAX_BODY_BYTES", value_name = "FLOWCLOUD_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(64 * 1024..=256 * 1024 * 1024))]
    pub max_body_bytes: u32,

    /// Milliseconds a websocket may wait before sending `connection_init` (then closed with 4408).
    #[arg(long, global = true, env = "FLOWCLOUD_WS_INIT_TIMEOUT_MS", value_name = "FLOWCLOUD_WS_INIT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(10..=600_000))]
    pub ws_init_timeout_ms: u32,

    /// Seconds between server pings on idle websockets (keeps proxies from dropping them).
    #[arg(long, global = true, env = "FLOWCLOUD_WS_PING_SECONDS", value_name = "FLOWCLOUD_WS_PING_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub ws_ping_seconds: u32,

    /// Seconds a leader lease lasts; another replica takes over this long after a leader dies.
    #[arg(long, global = true, env = "FLOWCLOUD_LEADER_LEASE_SECONDS", value_name = "FLOWCLOUD_LEADER_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub leader_lease_seconds: u32,

    /// Run the background services (scheduler, late-run detector, retention) in this process.
    /// Turn off for API-only replicas; one replica with them on is enough.
    #[arg(long, global = true, env = "FLOWCLOUD_BACKGROUND_SERVICES", value_name = "FLOWCLOUD_BACKGROUND_SERVICES", default_value_t = true, action = clap::ArgAction::Set)]
    pub background_services: bool,

    /// Days events are kept for subscription replay.
    #[arg(long, global = true, env = "FLOWCLOUD_EVENT_RETENTION_DAYS", value_name = "FLOWCLOUD_EVENT_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_retention_days: u32,

    /// Days log lines are kept.
    #[arg(long, global = true, env = "FLOWCLOUD_LOG_RETENTION_DAYS", value_name = "FLOWCLOUD_LOG_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub log_retention_days: u32,

    /// Failed log-ins allowed per account or address within the throttle window.
    #[arg(long, global = true, env = "FLOWCLOUD_LOGIN_MAX_FAILURES", value_name = "FLOWCLOUD_LOGIN_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures: u32,

    /// Length of the log-in throttle window in seconds.
    #[arg(long, global = true, env = "FLOWCLOUD_LOGIN_THROTTLE_SECONDS", value_name = "FLOWCLOUD_LOGIN_THROTTLE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_throttle_seconds: u32,
}

impl Config {
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }

    /// A configuration for tests and embedding: defaults, with the given database.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            jwt_secret: None,
            late_after_seconds: 15,
            max_workspaces_per_account: 1,
            max_collaborators_per_workspace: 3,
            log: "info".into(),
            session_ttl_seconds: 86_400,
            cors_origins: "*".into(),
            graphiql_assets_url: "https://unpkg.com".into(),
            max_body_bytes: 16 * 1024 * 1024,
            ws_init_timeout_ms: 10_000,
            ws_ping_seconds: 15,
            leader_lease_seconds: 10,
            background_services: true,
            event_retention_days: 7,
            log_retention_days: 30,
            login_max_failures: 5,
            login_throttle_seconds: 60,
        }
    }
}

fn parse_database_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "sqlite" | "postgres" | "postgresql" => Ok(value.to_owned()),
        other => Err(format!(
            "unsupported scheme `{other}` (use sqlite://FILE or postgres://…)"
        )),
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    // Go-style `:PORT` means every interface.
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_owned()
    };
    full.parse()
        .map_err(|_| "expected HOST:PORT, e.g. 127.0.0.1:4200 or :0".to_owned())
}

fn parse_secret(value: &str) -> Result<String, String> {
    if value.len() < 32 {
        return Err("must be at least 32 characters".into());
    }
    Ok(value.to_owned())
}

fn parse_http_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http(s) URL".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}
