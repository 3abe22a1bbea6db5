//! The one error type that crosses into GraphQL. It maps itself to `extensions.code` and logs
//! (never sends) internal causes.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql converts anything that
//! does into an error *without* a code, so a stray `?` would silently drop it. Without `Display`
//! the only way into `async_graphql::Error` is the explicit `From` below.
use async_graphql::ErrorExtensions;

#[derive(Debug, Clone)]
pub enum AppError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadInput {
        field: String,
        message: String,
    },
    Conflict(String),
    LimitExceeded(String),
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    QueryTooComplex(String),
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        Self::BadInput {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn unauthenticated() -> Self {
        Self::Unauthenticated("authentication required".into())
    }

    /// Logs the cause in full and returns an error whose message reveals nothing.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::Internal(cause.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadInput { .. } => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::LimitExceeded(_) => "LIMIT_EXCEEDED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The message a client sees.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unauthenticated(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::LimitExceeded(m)
            | Self::QueryTooComplex(m) => m.clone(),
            Self::BadInput { field, message } => format!("{field}: {message}"),
            Self::RateLimited { message, .. } => message.clone(),
            Self::Internal(_) => "internal server error".into(),
        }
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        let code = err.code();
        async_graphql::Error::new(err.public_message()).extend_with(|_, ext| {
            ext.set("code", code);
            match &err {
                AppError::BadInput { field, .. } => ext.set("field", field.as_str()),
                AppError::RateLimited {
                    retry_after_seconds,
                    ..
                } => ext.set("retryAfterSeconds", *retry_after_seconds),
                _ => {}
            }
        })
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        AppError::internal(err)
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(err: sea_orm::TransactionError<AppError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => AppError::internal(db),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

/// True when a database error is a unique-constraint violation (a lost race with a concurrent
/// insert), which callers turn into `CONFLICT`.
pub fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
