//! `/console`: the operator console, a page and its script and style, vendored in the
//! binary (no CDN, no build step). It signs in with an API key or the admin token (kept
//! in the tab's `sessionStorage`) and reads and acts through the same API as everyone.

use actix_web::{HttpResponse, http::header, web};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Only what the console itself serves: no inline script, no other origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .body(body)
}

/// `GET /console`: the page.
pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /console/{file}`: its script and style.
pub async fn file(name: web::Path<String>) -> HttpResponse {
    match name.as_str() {
        "app.js" => asset("text/javascript; charset=utf-8", SCRIPT),
        "app.css" => asset("text/css; charset=utf-8", STYLE),
        "" => HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, "/console"))
            .finish(),
        _ => actix_web::ResponseError::error_response(&crate::error::ApiError::not_found(
            "not_found",
            format!("no console file `{name}`"),
        )),
    }
}
