//! `GET /odata/Folders`, `GET /odata/Releases` and `/odata/Webhooks` CRUD.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::common::{Sim, Tenant, authorize, folder, json_body, or_error, path_id, tenant};
use super::odata_query::Query;
use super::scenario::{Folder, Release};
use super::state::{SimState, Webhook};

/// Returns early with the error response.
macro_rules! try_res {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(res) => return res,
        }
    };
}
pub(crate) use try_res;

/// Parses the OData query, answering 400/1000 on error.
pub fn query(req: &HttpRequest) -> Result<Query, HttpResponse> {
    Query::parse(req.query_string()).map_err(|m| or_error(400, 1000, &m))
}

/// An OData collection response.
pub fn collection(
    req: &HttpRequest,
    tenant: &Tenant,
    entity: &str,
    q: &Query,
    items: Vec<Value>,
) -> HttpResponse {
    let (page, count) = q.apply(items);
    page_response(req, tenant, entity, q, page, count)
}

/// An OData collection response for a page already filtered.
pub fn page_response(
    req: &HttpRequest,
    tenant: &Tenant,
    entity: &str,
    q: &Query,
    page: Vec<Value>,
    count: usize,
) -> HttpResponse {
    let info = req.connection_info();
    let mut body = json!({
        "@odata.context": format!("{}://{}{}/odata/$metadata#{entity}", info.scheme(), info.host(), tenant.prefix()),
    });
    if q.count {
        body["@odata.count"] = json!(count);
    }
    body["value"] = Value::Array(page);
    HttpResponse::Ok().json(body)
}

/// FolderDto.
pub fn folder_dto(f: &Folder, all: &[Folder]) -> Value {
    let (parent_path, display) = match f.fully_qualified_name.rsplit_once('/') {
        Some((p, d)) => (Some(p), d),
        None => (None, f.fully_qualified_name.as_str()),
    };
    let parent = parent_path.and_then(|p| all.iter().find(|x| x.fully_qualified_name == p));
    json!({
        "Key": f.key,
        "DisplayName": display,
        "FullyQualifiedName": f.fully_qualified_name,
        "Description": null,
        "FolderType": "Standard",
        "IsPersonal": false,
        "ProvisionType": "Manual",
        "PermissionModel": "FineGrained",
        "ParentId": parent.map(|p| p.id),
        "ParentKey": parent.map(|p| p.key.clone()),
        "FeedType": "Processes",
        "Id": f.id,
    })
}

/// ReleaseDto, with `Arguments.Input`/`Output` as JSON strings.
pub fn release_dto(r: &Release, state: &SimState) -> Value {
    let args = |list: &[super::scenario::Argument]| -> Value {
        if list.is_empty() {
            return Value::Null;
        }
        let defs: Vec<Value> = list
            .iter()
            .map(|a| json!({"name": a.name, "type": a.type_name, "required": a.required, "hasDefault": a.has_default}))
            .collect();
        Value::String(Value::Array(defs).to_string())
    };
    let folder = state.scenario.folders.iter().find(|f| f.id == r.folder_id);
    json!({
        "Key": r.key,
        "ProcessKey": r.process_key,
        "ProcessVersion": r.process_version,
        "IsLatestVersion": true,
        "IsProcessDeleted": false,
        "Description": "",
        "Name": r.name,
        "EntryPointPath": null,
        "InputArguments": null,
        "ProcessType": "Process",
        "SupportsMultipleEntryPoints": false,
        "RequiresUserInteraction": false,
        "IsAttended": false,
        "IsCompiled": true,
        "Arguments": { "Input": args(&r.input_arguments), "Output": args(&r.output_arguments) },
        "AutoUpdate": false,
        "HiddenForAttendedUser": false,
        "JobPriority": "Normal",
        "SpecificPriorityValue": 45,
        "FolderKey": folder.map(|f| f.key.clone()),
        "OrganizationUnitId": r.folder_id,
        "OrganizationUnitFullyQualifiedName": folder.map(|f| f.fully_qualified_name.clone()),
        "TargetFramework": "Portable",
        "RobotSize": null,
        "Tags": [],
        "RemoteControlAccess": "None",
        "CreationTime": "2026-01-05T09:30:00.000Z",
        "Id": r.id,
    })
}

/// `GET /odata/Folders` (tenant-level: no folder header).
pub async fn list_folders(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Folders", false));
    let q = try_res!(query(&req));
    let all = &state.scenario.folders;
    let items = all.iter().map(|f| folder_dto(f, all)).collect();
    collection(&req, &t, "Folders", &q, items)
}

/// `GET /odata/Releases` in the folder of the request.
pub async fn list_releases(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Execution", false));
    let f = try_res!(folder(&state, &req));
    let q = try_res!(query(&req));
    let items = state
        .scenario
        .releases
        .iter()
        .filter(|r| r.folder_id == f.id)
        .map(|r| release_dto(r, &state))
        .collect();
    collection(&req, &t, "Releases", &q, items)
}

/// `GET /odata/Webhooks`.
pub async fn list_webhooks(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Webhooks", false));
    let q = try_res!(query(&req));
    let items = state
        .webhooks
        .values()
        .map(|w| serde_json::to_value(w).expect("serializes"))
        .collect();
    collection(&req, &t, "Webhooks", &q, items)
}

fn webhook_from_body(body: &Bytes, id: i64, key: String) -> Result<Webhook, HttpResponse> {
    let f = json_body(body)?;
    let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
    let flag = |k: &str| f.get(k).and_then(Value::as_bool);
    let missing = |k: &str| or_error(400, 1000, &format!("The field {k} is required."));
    let name = text("name").ok_or_else(|| missing("Name"))?;
    let url = text("url").ok_or_else(|| missing("Url"))?;
    if name.len() > 128 || url.len() > 2000 || text("secret").is_some_and(|s| s.len() > 100) {
        return Err(or_error(
            400,
            1000,
            "Name (128), Url (2000) or Secret (100) is too long.",
        ));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(or_error(400, 1000, "Url must be an absolute http(s) URL."));
    }
    Ok(Webhook {
        id,
        key,
        name,
        description: text("description"),
        url,
        enabled: flag("enabled").ok_or_else(|| missing("Enabled"))?,
        secret: text("secret"),
        subscribe_to_all_events: flag("subscribetoallevents")
            .ok_or_else(|| missing("SubscribeToAllEvents"))?,
        allow_insecure_ssl: flag("allowinsecuressl").ok_or_else(|| missing("AllowInsecureSsl"))?,
        events: f
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        broken_until: None,
    })
}

/// `POST /odata/Webhooks`.
pub async fn create_webhook(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let mut state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Webhooks", true));
    let id = state.next_webhook_id;
    let hook = try_res!(webhook_from_body(
        &body,
        id,
        uuid::Uuid::new_v4().to_string()
    ));
    if state.webhooks.values().any(|w| w.name == hook.name) {
        return or_error(409, 1001, "The name is already used.");
    }
    state.next_webhook_id += 1;
    state.webhooks.insert(id, hook.clone());
    HttpResponse::Created().json(hook)
}

/// `POST /odata/Webhooks({id})/UiPath.Server.Configuration.OData.Ping`: sends a signed
/// `ping` event to the webhook's URL (subscribed or not, enabled or not: it tests the
/// target) and answers 202 with it.
pub async fn ping_webhook(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let id = try_res!(path_id(&req));
    let (hook, payload) = {
        let mut state = sim.lock();
        let t = try_res!(tenant(&state, &req));
        try_res!(authorize(&state, &req, &t, "OR.Webhooks", false));
        let Some(hook) = state.webhooks.get(&id).cloned() else {
            return or_error(404, 1002, "Webhook does not exist.");
        };
        state.counters.webhooks_sent += 1;
        let payload = super::outbox::ping_payload(&hook, 1);
        (hook, payload)
    };
    let body = serde_json::to_vec(&payload).expect("an event serializes");
    super::outbox::send(&sim.into_inner(), hook.id, hook.url, hook.secret, body);
    HttpResponse::Accepted().json(payload)
}

/// `GET`, `PUT` and `DELETE /odata/Webhooks({id})`.
pub async fn one_webhook(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let id = try_res!(path_id(&req));
    let mut state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    let write = req.method() != actix_web::http::Method::GET;
    try_res!(authorize(&state, &req, &t, "OR.Webhooks", write));
    let Some(existing) = state.webhooks.get(&id).cloned() else {
        return or_error(404, 1002, "Webhook does not exist.");
    };
    match *req.method() {
        actix_web::http::Method::GET => HttpResponse::Ok().json(existing),
        actix_web::http::Method::PUT => {
            let hook = try_res!(webhook_from_body(&body, id, existing.key));
            state.webhooks.insert(id, hook);
            HttpResponse::Ok().finish()
        }
        _ => {
            state.webhooks.remove(&id);
            HttpResponse::NoContent().finish()
        }
    }
}
