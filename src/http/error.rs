//! The one mapping from errors to HTTP responses.
//!
//! Bad input is 400 with a message naming the field, an oversized body 413, an unknown path
//! 404, a wrong method 405. Anything that stops a decision from being made is 5xx and never an
//! allow: the API fails closed. A deny is not an error: it is a 200 whose decision is `Deny`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};
use serde_json::json;

/// An API request that cannot be answered with a decision.
///
/// `Display` gives the message, and every variant's message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a missing or mistyped field, an unknown type or action.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the configured limit.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// No such endpoint.
    #[error("no endpoint at `{0}`")]
    NotFound(String),
    /// The endpoint exists, with other methods.
    #[error("method `{method}` is not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods the endpoint takes.
        allow: &'static str,
    },
    /// Missing, invalid or expired credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Valid credentials that may not do this (e.g. another workspace).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A dependency (the share store) failed; nothing was changed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The body did not arrive within the body timeout; the connection is closed.
    #[error("the request body did not arrive within {0:?}")]
    RequestTimeout(std::time::Duration),
    /// Shed: the evaluation pool is full, or the request passed its deadline. Nothing was
    /// decided; retry later (`Retry-After`).
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The decision could not be made; the caller must treat it as a deny.
    #[error("cannot decide: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The error as the JSON body every error response has.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

impl From<crate::pool::PoolError> for ApiError {
    fn from(error: crate::pool::PoolError) -> Self {
        match error {
            crate::pool::PoolError::Failed(_) => ApiError::Internal(error.to_string()),
            _ => ApiError::Overloaded(error.to_string()),
        }
    }
}

/// The response for `error`.
pub fn respond(error: &ApiError) -> Response<Full<Bytes>> {
    let mut response = json_response(error.status(), &error.body());
    if let ApiError::MethodNotAllowed { allow, .. } = error {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    if let ApiError::Overloaded(_) | ApiError::Unavailable(_) = error {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    if let ApiError::RequestTimeout(_) = error {
        // The rest of the body may still be on its way: this connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    if let ApiError::Unauthorized(_) = error {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    bytes_response(
        status,
        serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// A JSON response of `bytes`, JSON text already.
pub fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
