//! The Swagger UI's document, `/openapi.json`: the static operations, one
//! `POST /run/{name}` per configured process and one `POST /queues/{name}` per queue
//! mapping; and `/docs` -> `/docs/`.

use actix_web::{HttpResponse, http::header, web};

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::processes;

/// The document as it stands now: processes saved a moment ago are in it. It is built
/// again only after a change to the configuration (one the lookups cache heard of).
pub async fn openapi_json(
    state: web::Data<AppState>,
    base: web::Data<crate::views::openapi::Static>,
) -> Result<HttpResponse, ApiError> {
    let generation = state.lookups.generation();
    let doc = match base.rendered(generation) {
        Some(doc) => doc,
        None => {
            let processes = processes::list(&state.pool, false).await?;
            let queues = processes::list(&state.pool, true).await?;
            let doc = crate::views::openapi::document(&base.base, &processes, &queues);
            let doc = web::Bytes::from(serde_json::to_vec(&doc).map_err(anyhow::Error::from)?);
            base.keep(generation, doc.clone());
            doc
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("application/json")
        .body(doc))
}

/// `/docs` -> `/docs/`, where the Swagger UI lives.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}
