//! `/console`: the operator console's page, script and style, served by the binary with a
//! strict content security policy and no credentials (the page signs in itself). The
//! console itself is driven in headless Chromium by `.ci/browser/console.mjs`.

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_console_is_served_with_its_assets_and_a_strict_policy() {
    let app = spawn_app().await;
    let page = app.get("/console").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("default-src 'none'"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/console/app.js") && !html.contains("<script>"),
        "no inline script"
    );
    for (file, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let res = app.get(&format!("/console/{file}")).await;
        assert_eq!(res.status(), 200, "{file}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    // Values from the API go on the page as text, never as HTML.
    let script = app.get("/console/app.js").await.text().await.unwrap();
    assert!(
        !script.contains("innerHTML"),
        "the console builds its DOM with text nodes"
    );
    let missing = app.get("/console/nope.js").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}
