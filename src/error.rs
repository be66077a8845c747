//! The crate's error type. Exit codes (CLI) and HTTP statuses (admin API)
//! derive from its kind, so the two surfaces always agree.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Invalid config file or environment: exit 2.
    Config,
    /// The user's input is wrong: exit 2, HTTP 422.
    BadInput,
    /// The request itself is malformed (not JSON, bad query string): HTTP 400.
    MalformedRequest,
    /// The request body is over the limit: HTTP 413.
    TooLarge,
    /// Missing or wrong admin token: HTTP 401.
    Unauthorized,
    /// A merchant API key on an admin-only route: HTTP 403.
    Forbidden,
    /// The named thing does not exist: exit 2, HTTP 404.
    NotFound,
    /// The operation conflicts with the current state: exit 1, HTTP 409.
    Conflict,
    /// A dependency is unreachable (database down): exit 1, HTTP 503.
    Unavailable,
    /// Database, network or other failure: exit 1, HTTP 500.
    Internal,
}

#[derive(Debug)]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AppError {
            kind,
            message: message.into(),
        }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} {id:?} not found"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Config
            | ErrorKind::BadInput
            | ErrorKind::MalformedRequest
            | ErrorKind::TooLarge
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::NotFound => 2,
            ErrorKind::Conflict | ErrorKind::Unavailable | ErrorKind::Internal => 1,
        }
    }

    /// A stable machine-readable code for JSON errors.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Config => "invalid_config",
            ErrorKind::BadInput => "invalid_input",
            ErrorKind::MalformedRequest => "malformed_request",
            ErrorKind::TooLarge => "payload_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        // sqlx errors carry SQL and driver text, never bound values, so they
        // cannot leak a secret.
        AppError::internal(format!("database error: {e}"))
    }
}

impl From<sqlx::migrate::MigrateError> for AppError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        AppError::internal(format!("database migration failed: {e}"))
    }
}

impl From<apalis_sqlite::Error> for AppError {
    fn from(e: apalis_sqlite::Error) -> Self {
        AppError::internal(format!("queue error: {e}"))
    }
}

pub type AppResult<T> = Result<T, AppError>;
