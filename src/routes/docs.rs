//! The Swagger UI's document, `/openapi.json`: the static operations and one
//! `POST /run/{name}` per configured process; and `/docs` -> `/docs/`.

use actix_web::{HttpResponse, http::header, web};

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::processes;

/// The document as it stands now: processes saved a moment ago are in it.
pub async fn openapi_json(
    state: web::Data<AppState>,
    base: web::Data<crate::views::openapi::Static>,
) -> Result<HttpResponse, ApiError> {
    let processes = processes::list(&state.pool).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(crate::views::openapi::document(&base.0, &processes)))
}

/// `/docs` -> `/docs/`, where the Swagger UI lives.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}
