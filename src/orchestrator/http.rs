//! The outgoing HTTP every part shares: one client builder (rustls with ring), the
//! Orchestrator client's settings, and the header that names a folder.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};

use crate::domain::folder::FolderRef;

impl FolderRef {
    /// The header that carries this folder. Non-ASCII paths use the `-Encoded` header
    /// (Base64 of UTF-16LE), as UiPath's SDK does.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let (name, value) = match self {
            FolderRef::Id(id) => ("x-uipath-organizationunitid", id.to_string()),
            FolderRef::Key(key) => ("x-uipath-folderkey", key.clone()),
            FolderRef::Path(path) if path.is_ascii() && !path.chars().any(char::is_control) => {
                ("x-uipath-folderpath", path.clone())
            }
            FolderRef::Path(path) => {
                let utf16: Vec<u8> = path.encode_utf16().flat_map(u16::to_le_bytes).collect();
                (
                    "x-uipath-folderpath-encoded",
                    base64::engine::general_purpose::STANDARD.encode(utf16),
                )
            }
        };
        (
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")),
        )
    }
}

/// A builder for every outgoing HTTP client: rustls with the ring provider, which is
/// installed as the process default first (reqwest needs one; sqlx uses ring too).
pub fn builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Fails only if a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// The shared HTTP client: rustls, timeouts, no redirects to other hosts.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("uipath-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}
