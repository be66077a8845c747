//! `Authorization: Bearer <admin.token>`, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::error::{AppError, ErrorKind};

#[derive(Clone)]
pub struct Token(Arc<Vec<u8>>);

impl Token {
    pub fn new(token: &str) -> Self {
        Token(Arc::new(token.as_bytes().to_vec()))
    }
}

pub async fn require_bearer(State(token): State<Token>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        // `ct_eq` compares in constant time for equal lengths; a length
        // mismatch answers at once, which reveals only the length.
        Some(g) if bool::from(g.as_bytes().ct_eq(token.0.as_slice())) => next.run(req).await,
        Some(_) => ApiError(AppError::new(
            ErrorKind::Unauthorized,
            "the bearer token is not valid",
        ))
        .into_response(),
        None => ApiError(AppError::new(
            ErrorKind::Unauthorized,
            "missing Authorization: Bearer <admin.token> header",
        ))
        .into_response(),
    }
}
