//! The page's files, embedded in the binary with `include_str!` (debug
//! builds too): `GET /` and `GET /observer/{observer.css,observer.js}`.

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

const INDEX: &str = include_str!("../../assets/observer/index.html");
const CSS: &str = include_str!("../../assets/observer/observer.css");
const JS: &str = include_str!("../../assets/observer/observer.js");

/// The page's security headers: nothing loads from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /observer/{file}`: its stylesheet and script.
pub(super) async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "observer.css" => asset("text/css; charset=utf-8", CSS),
        "observer.js" => asset("text/javascript; charset=utf-8", JS),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
