//! Every HTTP route. `configure` declares them all; the OpenAPI document is
//! collected from the same calls, so the two cannot disagree.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod connections;
pub mod console;
pub mod dead_letters;
pub mod docs;
pub mod events;
pub mod extractors;
pub mod gate;
pub mod health;
pub mod hook_admin;
pub mod hooks;
pub mod jobs;
pub mod processes;
pub mod queue_items;
pub mod queue_mappings;
pub mod run;

use actix_web::dev::ResourceDef;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::openapi::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig) {
    // The hot routes first: actix tries resources in this order, matching each
    // parameterised path with a regex, so every route ahead of `/run` costs a match.
    cfg.service(run::run)
        .service(hooks::receive)
        .service(events::orchestrator_event)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::status)
        .service(health::metrics)
        .service(connections::create_connection)
        .service(connections::list_connections)
        .service(connections::get_connection)
        .service(connections::replace_connection)
        .service(connections::delete_connection)
        .service(connections::test_connection)
        .service(connections::connection_folders)
        .service(connections::connection_releases)
        .service(connections::connection_queues)
        .service(processes::create_process)
        .service(processes::list_processes)
        .service(processes::get_process)
        .service(processes::replace_process)
        .service(processes::delete_process)
        .service(api_keys::create_api_key)
        .service(api_keys::list_api_keys)
        .service(api_keys::revoke_api_key)
        .service(jobs::list_jobs)
        .service(jobs::get_job)
        .service(jobs::stop_job)
        .service(jobs::replay_job)
        .service(dead_letters::list_dead_letters)
        .service(dead_letters::redrive_job)
        .service(dead_letters::redrive_callback)
        .service(processes::rotate_callback_secret)
        .service(hook_admin::create_hook)
        .service(hook_admin::list_hooks)
        .service(hook_admin::get_hook)
        .service(hook_admin::replace_hook)
        .service(hook_admin::delete_hook)
        .service(hook_admin::list_deliveries)
        .service(hook_admin::get_delivery)
        .service(hook_admin::replay_delivery)
        .service(audit::list_audit)
        .service(queue_items::add_item)
        .service(queue_items::get_item)
        .service(queue_items::list_items)
        .service(queue_mappings::create_queue_mapping)
        .service(queue_mappings::list_queue_mappings)
        .service(queue_mappings::get_queue_mapping)
        .service(queue_mappings::replace_queue_mapping)
        .service(queue_mappings::delete_queue_mapping)
        .service(queue_mappings::rotate_queue_callback_secret);
}

/// Every path we serve, its methods, and which of them need credentials: to tell a 405
/// from a 404, and to refuse a call without credentials before its body is read.
pub struct RouteTable(Vec<Route>);

struct Route {
    def: ResourceDef,
    methods: Vec<String>,
    /// Methods whose operation declares a security requirement, and whether that is the
    /// admin token's.
    protected: Vec<(String, bool)>,
}

impl RouteTable {
    /// Built from the OpenAPI document, plus the Swagger UI routes it does not list.
    pub fn from_spec(spec: &OpenApi) -> Self {
        let mut routes: Vec<Route> = spec
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", &item.get),
                    ("PUT", &item.put),
                    ("POST", &item.post),
                    ("DELETE", &item.delete),
                    ("PATCH", &item.patch),
                ];
                let present = || methods.iter().filter(|m| m.1.is_some());
                Route {
                    def: ResourceDef::new(path.as_str()),
                    methods: present().map(|m| m.0.to_string()).collect(),
                    protected: present()
                        .filter_map(|m| {
                            let security = m.1.as_ref()?.security.as_ref()?;
                            let text = serde_json::to_string(security).ok()?;
                            (!security.is_empty())
                                .then(|| (m.0.to_string(), text.contains("admin_token")))
                        })
                        .collect(),
                }
            })
            .collect();
        for path in [
            "/openapi.json",
            "/docs",
            "/docs/{_:.*}",
            "/console",
            "/console/{file}",
        ] {
            routes.push(Route {
                def: ResourceDef::new(path),
                methods: vec!["GET".into()],
                protected: Vec::new(),
            });
        }
        Self(routes)
    }

    fn route(&self, path: &str) -> Option<&Route> {
        self.0.iter().find(|r| r.def.is_match(path))
    }

    fn allowed(&self, path: &str) -> Option<&[String]> {
        self.route(path).map(|r| r.methods.as_slice())
    }

    /// Whether `method path` is an operation that needs credentials: None when it needs
    /// none, else whether they are the admin token's.
    pub fn credentials(&self, method: &str, path: &str) -> Option<bool> {
        self.route(path)?
            .protected
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, admin)| *admin)
    }
}

/// Answers requests that match no route: 405 when the path exists with other methods.
pub async fn not_found(
    req: HttpRequest,
    routes: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let (method, path) = (req.method().to_string(), req.path().to_string());
    match routes.allowed(&path) {
        Some(allowed) => Err(ApiError::MethodNotAllowed {
            method,
            path,
            allowed: allowed.to_vec(),
        }),
        None => Err(ApiError::not_found(
            "not_found",
            format!("No route matches {method} {path}."),
        )),
    }
}
