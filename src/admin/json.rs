//! Request extractors whose rejections are our JSON errors: malformed JSON
//! is a 400, a well-formed body with a wrong or missing field a 422, a bad
//! query string a 400 — each naming what is wrong.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::error::{AppError, ErrorKind};

pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError(AppError::bad_input(format!(
                "request body: {}",
                e.body_text().trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            )))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError(AppError::new(
                ErrorKind::MalformedRequest,
                "request body: expected Content-Type: application/json",
            ))),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(ApiError(AppError::new(
                ErrorKind::MalformedRequest,
                format!("request body: expected a JSON object ({})", e.body_text()),
            ))),
        }
    }
}

/// An optional JSON body: empty means `T::default()`.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return too_large();
                }
                ApiError(AppError::new(
                    ErrorKind::MalformedRequest,
                    format!("request body: {e}"),
                ))
            })?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| {
                let kind = if e.is_data() {
                    ErrorKind::BadInput
                } else {
                    ErrorKind::MalformedRequest
                };
                ApiError(AppError::new(kind, format!("request body: {e}")))
            })
    }
}

fn too_large() -> ApiError {
    ApiError(AppError::new(
        ErrorKind::TooLarge,
        format!(
            "request body: expected at most {} bytes",
            super::MAX_BODY_BYTES
        ),
    ))
}

pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError(AppError::new(
                    ErrorKind::MalformedRequest,
                    format!("query string: {}", e.body_text()),
                )))
            }
            Err(e) => Err(ApiError(AppError::new(
                ErrorKind::MalformedRequest,
                e.body_text(),
            ))),
        }
    }
}
