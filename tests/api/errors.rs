//! Every error is problem+json. Unknown routes and wrong methods go through the
//! real server; body parsing goes through the real extractor settings, since no
//! route of the foundation takes a JSON body yet.

use actix_web::{App, HttpResponse, middleware::from_fn, post, test, web};
use serde::Deserialize;
use uipath_gateway::routes::{RouteTable, extractors, not_found};
use uipath_gateway::telemetry::request_id;

use crate::helpers::spawn_app;

async fn problem(res: reqwest::Response) -> serde_json::Value {
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

#[tokio::test]
async fn unknown_route_gets_404_problem() {
    let app = spawn_app().await;
    let res = app.get("/no/such/route").await;
    assert_eq!(res.status(), 404);
    let body = problem(res).await;
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "urn:uipath-gateway:problem:not_found");
    assert!(body["detail"].as_str().unwrap().contains("/no/such/route"));
}

#[tokio::test]
async fn wrong_method_gets_405_problem_with_allow() {
    let app = spawn_app().await;
    let res = app.client.delete(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    let body = problem(res).await;
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn large_body_to_a_route_without_one_gets_a_problem_not_a_hang() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/healthz"))
        .body(vec![b'x'; 10 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    problem(res).await;
}

#[derive(Deserialize)]
struct Echo {
    #[allow(dead_code)]
    name: String,
}

#[post("/echo")]
async fn echo(_body: web::Json<Echo>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn call(content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let limit = 1024;
    let app = test::init_service(
        App::new()
            .wrap(from_fn(request_id))
            .app_data(web::Data::new(RouteTable::from_spec(
                &uipath_gateway::openapi::spec(),
            )))
            .configure(|cfg| extractors::configure(cfg, limit))
            .service(echo)
            .default_service(web::to(not_found)),
    )
    .await;
    let req = test::TestRequest::post()
        .uri("/echo")
        .insert_header(("content-type", content_type))
        .set_payload(body)
        .to_request();
    let res = test::call_service(&app, req).await;
    let status = res.status().as_u16();
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    (status, body)
}

#[actix_web::test]
async fn malformed_json_gets_400_problem() {
    let (status, body) = call("application/json", b"{\"name\": ".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "malformed_json");
}

#[actix_web::test]
async fn json_of_the_wrong_shape_gets_400_problem() {
    let (status, body) = call("application/json", b"{\"name\": 5}".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_body");
}

#[actix_web::test]
async fn wrong_content_type_gets_415_problem() {
    let (status, body) = call("text/plain", b"{\"name\": \"x\"}".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(body["code"], "unsupported_media_type");
}

#[actix_web::test]
async fn oversized_body_gets_413_problem() {
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(4096));
    let (status, body) = call("application/json", big.into_bytes()).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["detail"].as_str().unwrap().contains("1024"));
}

#[actix_web::test]
async fn deeply_nested_json_gets_400_problem() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = call("application/json", deep.into_bytes()).await;
    assert!(status == 400 || status == 413, "{status}");
    assert!(body["code"].is_string());
}
