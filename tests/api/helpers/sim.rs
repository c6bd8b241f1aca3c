//! Driving the simulator over HTTP, as our client and users do.

use serde_json::{Value, json};
use uipath_gateway::simulator::{Scenario, Simulator};

pub const CLOUD: &str = "/demo-org/DefaultTenant/orchestrator_";
pub const INVOICE_KEY: &str = "b27c7363-459c-4520-bae5-660d4a1d3813";

pub struct Sim {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

/// A simulator on a random port, with the default scenario adjusted by the test.
pub async fn spawn_sim(adjust: impl FnOnce(&mut Scenario)) -> Sim {
    let mut scenario = Scenario::default();
    adjust(&mut scenario);
    let sim = Simulator::start(scenario, "127.0.0.1", 0)
        .await
        .expect("starting the simulator");
    Sim {
        sim,
        http: uipath_gateway::orchestrator::http::builder()
            .build()
            .unwrap(),
    }
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        self.sim.url(path)
    }

    pub fn cloud(&self, path: &str) -> String {
        self.sim.url(&format!("{CLOUD}{path}"))
    }

    pub async fn token_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A client-credentials token for the default External App.
    pub async fn token(&self) -> String {
        let res = self
            .token_form(
                "/identity_/connect/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", "sim-app"),
                    ("client_secret", "sim-app-secret"),
                ],
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn get(
        &self,
        url: &str,
        token: &str,
        folder: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut req = self.http.get(url).bearer_auth(token);
        if let Some((h, v)) = folder {
            req = req.header(h, v);
        }
        req.send().await.unwrap()
    }

    pub async fn post(
        &self,
        url: &str,
        token: &str,
        folder: Option<(&str, &str)>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self.http.post(url).bearer_auth(token).json(body);
        if let Some((h, v)) = folder {
            req = req.header(h, v);
        }
        req.send().await.unwrap()
    }

    /// StartJobs for InvoiceBot in Finance/AP.
    pub async fn start_invoice(&self, token: &str, reference: &str) -> reqwest::Response {
        let body = json!({"startInfo": {
            "ReleaseKey": INVOICE_KEY,
            "Strategy": "ModernJobsCount",
            "JobsCount": 1,
            "InputArguments": "{\"in_Vendor\":\"ACME\",\"in_Amount\":12.5}",
            "Reference": reference,
        }});
        self.post(
            &self.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs"),
            token,
            Some(("X-UIPATH-FolderPath", "Finance/AP")),
            &body,
        )
        .await
    }

    pub async fn put(&self, url: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, self.url(&format!("/__sim{path}")));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// The scenario's release of `process_key`, to change and `PUT /releases` back (a
    /// redeploy).
    pub fn release(&self, process_key: &str) -> uipath_gateway::simulator::scenario::Release {
        self.sim
            .with_state(|st| {
                st.scenario
                    .releases
                    .iter()
                    .find(|r| r.process_key == process_key)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no release {process_key} in the scenario"))
    }

    /// A control endpoint's JSON (`/counters`, `/jobs`, `/scenario`, ...).
    pub async fn read<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.control(reqwest::Method::GET, path, None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// The References of every StartJobs received, in order.
    pub async fn start_calls_refs(&self) -> Vec<String> {
        self.calls("StartJobs")
            .await
            .iter()
            .map(|c| {
                c["body"]["startInfo"]["Reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    pub async fn calls(&self, path_contains: &str) -> Vec<Value> {
        let url = format!(
            "{}?path_contains={}",
            self.url("/__sim/calls"),
            path_contains
        );
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
