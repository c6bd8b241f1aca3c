//! Answers every operation of a kind gives, added to the document in one place: 429
//! where a rate limit applies, 415 for JSON bodies, 401/403 for admin operations; and an
//! example of a real code on each error answer.

/// Every call that counts against a rate limit (those with credentials, and
/// `/hooks/{slug}`) may answer 429 with `Retry-After`; every JSON body may get 415; every
/// admin operation answers 401 without the admin token and 403 while the admin API is
/// closed (an operation may say more in its own words).
pub(super) fn add(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, Type, schema::ObjectBuilder,
    };
    let answer = ResponseBuilder::new()
        .description(
            "Over the rate limit of this API key or webhook; retry after `Retry-After` seconds",
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let not_json = problem("The body is not sent as `Content-Type: application/json`");
    let no_admin_token = problem("No or wrong admin token");
    let admin_closed = problem("The admin API is closed");
    for (path, op) in operations(&mut api.paths) {
        let limited =
            path == "/hooks/{slug}" || op.security.as_ref().is_some_and(|s| !s.is_empty());
        let admin = serde_json::to_value(&op.security)
            .is_ok_and(|s| s.to_string().contains("\"admin_token\""));
        if admin {
            let answers = &mut op.responses.responses;
            answers
                .entry("401".into())
                .or_insert_with(|| no_admin_token.clone().into());
            answers
                .entry("403".into())
                .or_insert_with(|| admin_closed.clone().into());
        }
        if limited {
            op.responses
                .responses
                .entry("429".into())
                .or_insert_with(|| answer.clone().into());
        }
        let takes_json = op
            .request_body
            .as_ref()
            .is_some_and(|b| b.content.contains_key("application/json"));
        if takes_json && path != "/hooks/{slug}" {
            op.responses
                .responses
                .entry("415".into())
                .or_insert_with(|| not_json.clone().into());
        }
    }
    code_enum(&mut api);
    examples(&mut api);
    x_api_key(&mut api);
    api
}

/// An API key may come as `Authorization: Bearer` or as `X-API-Key`: each operation that
/// takes one lists both, as alternatives.
fn x_api_key(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    for (_, op) in operations(&mut api.paths) {
        let takes_key =
            serde_json::to_string(&op.security).is_ok_and(|s| s.contains("\"api_key\""));
        if let Some(security) = op.security.as_mut().filter(|_| takes_key) {
            security.push(SecurityRequirement::new(
                "api_key_header",
                Vec::<String>::new(),
            ));
        }
    }
}

/// Every operation of the document, with its path.
fn operations(
    paths: &mut utoipa::openapi::path::Paths,
) -> impl Iterator<Item = (&String, &mut utoipa::openapi::path::Operation)> {
    paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        .map(move |op| (path, op))
    })
}

/// `Problem.code` as the enum of every code we answer with.
pub(super) fn code_enum(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema, Type, schema::ObjectBuilder};
    let Some(components) = api.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(problem))) = components.schemas.get_mut("Problem") {
        problem.properties.insert(
            "code".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("A stable, machine-readable error code."))
                .enum_values(Some(crate::error::CODES.iter().copied()))
                .into(),
        );
    }
}

/// An example on each error answer, with a code that status really carries there.
pub(super) fn examples(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for (path, op) in operations(&mut api.paths) {
        let has_body = op.request_body.is_some();
        for (status, answer) in op.responses.responses.iter_mut() {
            let RefOr::T(answer) = answer else { continue };
            let about = answer.description.to_lowercase();
            let Some(content) = answer.content.get_mut(crate::error::PROBLEM_JSON) else {
                continue;
            };
            if content.example.is_none() {
                content.example = example(status, path, has_body, &about);
            }
        }
    }
}

/// A problem document `status` answers on `path` with (`about`: the answer's description).
fn example(status: &str, path: &str, has_body: bool, about: &str) -> Option<serde_json::Value> {
    let on = |prefix: &str| path.starts_with(prefix);
    let (code, detail) = match status {
        "400" if on("/run") || on("/queues/") => (
            "malformed_json",
            "the body is not valid JSON: EOF while parsing an object at line 1 column 1",
        ),
        "400" if about.contains("could not be read") => (
            "unreadable_body",
            "the body could not be read: the connection closed",
        ),
        "400" if about.contains("strategy") => {
            ("invalid_strategy", "strategy must be SoftStop or Kill")
        }
        "400" if !has_body && (about.contains("uuid") || about.contains(" id")) => (
            "invalid_path_parameter",
            "the path does not fit: the id is not a UUID",
        ),
        "400" if !has_body && about.contains("cursor") => {
            ("invalid_cursor", "the cursor is not one this API gave out")
        }
        "400" if !has_body => (
            "invalid_query",
            "the query string does not fit: invalid digit found in string (limit)",
        ),
        "400" => (
            "invalid_body",
            "the JSON body does not fit: missing field `name`",
        ),
        "401" if on("/hooks") || on("/orchestrator") => (
            "signature_invalid",
            "the signature does not match the body; check the secret",
        ),
        "401" => (
            "unauthorized",
            "send a valid key: Authorization: Bearer ugw_...",
        ),
        "403" if about.contains("admin") => (
            "admin_api_closed",
            "the admin API is closed: set GATEWAY_ADMIN_TOKEN to open it",
        ),
        "403" => ("missing_scope", "this key lacks the scope run:Invoices"),
        "404" if on("/run") || on("/processes") => {
            ("process_not_found", "no process named `Invoice`")
        }
        "404" if on("/queues/") || on("/queue-mappings") => {
            ("queue_not_found", "no queue mapping named `InvoiceToBook`")
        }
        "404" if on("/queue-items") => (
            "queue_item_not_found",
            "no queue item 0b5e7a9c-62c2-4d5f-9f55-4ad4f1d7b0a3",
        ),
        "404" if on("/jobs") => (
            "job_not_found",
            "no job 0b5e7a9c-62c2-4d5f-9f55-4ad4f1d7b0a3",
        ),
        "404" if on("/callbacks") => (
            "callback_not_found",
            "no callback delivery 7c9e6679-7425-40de-944b-e07fc1f90ae7",
        ),
        "404" if on("/connections") || on("/orchestrator") => {
            ("connection_not_found", "no connection `acme-prod`")
        }
        "404" if on("/hooks") => ("hook_not_found", "no enabled webhook `github-prs`"),
        "404" if on("/webhooks") && about.contains("delivery") => (
            "delivery_not_found",
            "no delivery 5d1f0c1e-8b4f-4f7e-bb36-0c2d2f3e9a10 of this webhook",
        ),
        "404" if on("/webhooks") => ("webhook_not_found", "no webhook `github-prs`"),
        "404" if on("/api-keys") => (
            "api_key_not_found",
            "no API key 7c9e6679-7425-40de-944b-e07fc1f90ae7",
        ),
        "404" => ("not_found", "nothing with that id"),
        "408" => ("body_timeout", "the request body arrived too slowly"),
        "409" if on("/run") || on("/queues/") => (
            "idempotency_key_reused",
            "this Idempotency-Key was used with another body",
        ),
        "409" if about.contains("not dead-lettered") => {
            ("not_dead_lettered", "this job is not dead-lettered")
        }
        "409" if path.ends_with("/stop") => ("job_ended", "the job already ended (successful)"),
        "409" if path.ends_with("/replay") && on("/jobs") => {
            ("process_gone", "the process of this job no longer exists")
        }
        "409" if path.ends_with("/replay") => (
            "not_replayable",
            "this delivery did not pass its signature check and cannot be replayed",
        ),
        "409" if about.contains("misconfigured") => (
            "connection_misconfigured",
            "the stored secrets of this connection cannot be read",
        ),
        "409" if on("/connections") && about.contains("use it") => (
            "connection_in_use",
            "processes still use connection `acme-prod`: Invoices",
        ),
        "409" if on("/queue-mappings") && about.contains("webhooks") => (
            "process_in_use",
            "inbound webhooks target queue mapping `InvoicesToBook`: point them elsewhere or delete them first",
        ),
        "409" if on("/processes") && about.contains("webhooks") => (
            "process_in_use",
            "webhooks still start process `Invoices`: github-prs",
        ),
        "409" if on("/webhooks") => ("slug_taken", "a webhook `github-prs` already exists"),
        "409" if on("/connections") => (
            "name_taken",
            "a connection named `acme-prod` already exists",
        ),
        "409" => ("name_taken", "a process named `Invoices` already exists"),
        "413" => (
            "payload_too_large",
            "the request body is larger than the limit of 1048576 bytes",
        ),
        "415" => (
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        "422" if about.starts_with("orchestrator refused") => (
            "orchestrator_error",
            "Orchestrator refused job 0b5e7a9c-62c2-4d5f-9f55-4ad4f1d7b0a3: invalid request (400, 1000): the robot is not available",
        ),
        "422" if on("/queues/") => (
            "invalid_content",
            "Amount: \"twelve\" is not of type \"number\" (the queue's schema)",
        ),
        "422" if on("/queue-mappings") => (
            "validation_failed",
            "queue: folder `Finance/AP` has no queue named `InvoiceToBook`; its queues are: InvoicesToBook",
        ),
        "422" if on("/run") || on("/hooks") => (
            "invalid_arguments",
            "in_Amount: required (System.Decimal) but missing",
        ),
        "422" if on("/webhooks") && path.ends_with("/replay") => (
            "mapping_failed",
            "mapping.in_Amount: the expression `abs(body.amount)` could not be evaluated over this delivery: the function at character 0 got string as argument 1, where it takes number",
        ),
        "422" if on("/processes") => (
            "validation_failed",
            "release.process_key: folder `Finance/AP` has no release with process key `InvoiceBott`; its releases are: InvoiceBot (process key InvoiceBot)",
        ),
        "422" => (
            "validation_failed",
            "name: required: 1-100 letters, digits, `-` or `_`",
        ),
        "429" => (
            "rate_limited",
            "this API key sent more than 600 requests in a minute; retry after 2 s",
        ),
        "502" => (
            "orchestrator_error",
            "Orchestrator: authentication failed (400, invalid_client): client authentication failed",
        ),
        "503" if on("/readyz") => ("not_ready", "not ready: the database cannot be reached"),
        "503" if on("/metrics") => (
            "metrics_unavailable",
            "no metrics recorder could be installed in this process",
        ),
        "503" if on("/connections") || about.contains("orchestrator") => (
            "orchestrator_error",
            "Orchestrator is unavailable: connection refused",
        ),
        "503" => (
            "database_unavailable",
            "The database cannot be reached; nothing was changed. Retry later.",
        ),
        _ => return None,
    };
    let status: u16 = status.parse().ok()?;
    let title = actix_web::http::StatusCode::from_u16(status)
        .ok()?
        .canonical_reason()
        .unwrap_or("Error");
    let mut doc = serde_json::json!({
        "type": format!("urn:uipath-gateway:problem:{code}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    });
    if status == 422 {
        let (field, problem) = detail.split_once(": ").unwrap_or(("name", detail));
        doc["errors"] = serde_json::json!([{"field": field, "problem": problem}]);
    }
    Some(doc)
}
