//! The axum router: /graphql (POST, GraphiQL and queries on GET), /healthz, /readyz and
//! uploaded profile images.
mod documents;
pub mod graphiql;
mod graphql;
mod images;
mod ws;

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{extract::State, Router};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::graphql::AppSchema;
use crate::state::AppState;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: AppSchema,
    documents: documents::DocumentCache,
}

pub fn router(app: AppState, schema: AppSchema) -> Router {
    let cors = cors_layer(&app.config.cors_origins);
    let state = HttpState {
        app,
        schema,
        documents: documents::DocumentCache::default(),
    };
    Router::new()
        .route(
            "/graphql",
            get(graphql::graphql_get).post(graphql::graphql_post),
        )
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/profile-images/{id}", get(images::profile_image))
        .layer(cors)
        .with_state(state)
}

fn cors_layer(origins: &str) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("graphql-require-preflight"),
            HeaderName::from_static("apollo-require-preflight"),
        ])
        .max_age(Duration::from_secs(3600));
    if origins.trim() == "*" {
        return layer.allow_origin(Any);
    }
    let list: Vec<HeaderValue> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(list))
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.app.db.read().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
