//! Typed answers for what axum refuses before a handler runs: a path
//! parameter it cannot read (not UTF-8 once decoded), a body over its
//! limit, no such route, a method the route does not take. Each becomes
//! an [`ApiError`] (the same JSON shape and code range as every other
//! failure) instead of axum's plain text or empty body.

use axum::{
    http::{Uri, header},
    response::{IntoResponse, Response},
};

use crate::ApiError;

/// The router's fallback: no route has this path.
pub(crate) async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// Replaces a failed response that is not typed JSON (one axum made
/// itself) with the [`ApiError`] for its status; answers every other
/// response as it is.
pub(crate) async fn typed(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let make: fn(String) -> ApiError = match status.as_u16() {
        400 => ApiError::InvalidRequest,
        404 => ApiError::NoRoute,
        405 => |_| ApiError::MethodNotAllowed,
        413 => ApiError::TooLarge,
        // Others are left to whoever made them.
        _ => return response,
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let mut typed = make(text).into_response();
    if let Some(allow) = allow {
        typed.headers_mut().insert(header::ALLOW, allow);
    }
    typed
}
