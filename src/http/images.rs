//! Serves uploaded profile images with the type their bytes were recognised as.
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::HttpState;
use crate::domain::accounts;

pub async fn profile_image(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match accounts::profile_image(&state.app, id).await {
        Ok(Some(image)) => (
            [
                (header::CONTENT_TYPE, image.content_type),
                // A new upload gets a new id, so a served image never changes.
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            ],
            image.data,
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
