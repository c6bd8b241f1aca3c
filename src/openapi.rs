//! The OpenAPI document, used by the server, the `openapi` command and the drift test.

use actix_web::App;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::routes;

/// Top-level facts of the document; paths and schemas are collected from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "uipath-gateway",
        description = "Start UiPath robots over plain HTTP. Errors are RFC 9457 \
            `application/problem+json` documents with a stable `code`.",
        license(name = "MIT"),
    ),
    tags((name = "operations", description = "Health and readiness")),
    components(schemas(crate::error::Problem))
)]
pub struct ApiDoc;

/// The whole document, exactly as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::configure)
        .split_for_parts();
    api
}

/// The document as committed in `openapi/openapi.json`: pretty JSON and a final newline.
pub fn spec_json() -> String {
    let mut out = spec()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    out.push('\n');
    out
}
