//! Unit tests of `client`.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::orchestrator::http::builder;
use crate::orchestrator::odata::{pack, reference_filter};

/// A self-signed certificate for `localhost` (P-256, valid until 2126) and its key,
/// made for this test alone: they protect nothing.
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATigAwIBAgIUCDxtIWXGg8GBzWvSiz1O2poZgYIwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzE1MzUwOVoYDzIxMjYxMDMw
MTUzNTA5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS4qaUCSN4rICEXJfRU7UGzTdXZRnj7CunXrAHCZq+qlFmAAn9Xxy2L
QjQrcTOb8+9tsu1Zr1bB8399M/gruwSho2YwZDAdBgNVHQ4EFgQULs8PvbZVulul
K8KHBpaTnK061ZgwHwYDVR0jBBgwFoAULs8PvbZVululK8KHBpaTnK061ZgwFAYD
VR0RBA0wC4IJbG9jYWxob3N0MAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0EAwIDSAAw
RQIgSnPVaHhUlIS+VPpNvu2CsAS1e81Fy2YEiiLZelYpeWYCIQDbpWD4Pb9MapDo
2H6YMv+8V2J4V47thQlIrv8sSa8PWA==
-----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgN5YimZJyn2hf7Q2O
o5fUKOtlYCcxKfPMYiG4R0nrs0mhRANCAAS4qaUCSN4rICEXJfRU7UGzTdXZRnj7
CunXrAHCZq+qlFmAAn9Xxy2LQjQrcTOb8+9tsu1Zr1bB8399M/gruwSh
-----END PRIVATE KEY-----";

/// Answers one HTTPS request on `listener` with `200 ok`; returns the request head.
fn serve_once(listener: std::net::TcpListener) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let (tcp, _) = listener.accept().unwrap();
    let server = rustls::ServerConnection::new(Arc::new(config)).unwrap();
    let mut tls = rustls::StreamOwned::new(server, tcp);
    let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut buf).unwrap() {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .unwrap();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn filters_are_packed_by_count_and_by_length() {
    let ids: Vec<i64> = (1..=120).collect();
    let runs = pack(&ids, 50, 10_000, |id| format!("Id eq {id}").len());
    assert_eq!(
        runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
        [50, 50, 20]
    );
    let refs: Vec<String> = (0..10).map(|i| format!("ugw-{i:036}")).collect();
    let one = format!("Reference eq '{}'", refs[0]).len();
    let runs = pack(&refs, 50, one * 3 + 8, |r| {
        format!("Reference eq '{r}'").len()
    });
    assert!(
        runs.iter().all(|r| r.len() == 3 || r.len() == 1),
        "{runs:?}"
    );
    for run in runs {
        assert!(reference_filter(run).len() <= one * 3 + 8);
    }
    assert!(pack::<i64>(&[], 5, 100, |_| 1).is_empty());
}

/// The one crypto provider (ring) carries a real TLS handshake and request: the
/// client trusts the test certificate and gets the server's answer.
#[tokio::test]
async fn https_works_with_the_one_crypto_provider() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve_once(listener));
    let client = builder()
        .add_root_certificate(reqwest::Certificate::from_pem(CERT.as_bytes()).unwrap())
        .build()
        .unwrap();
    let res = client
        .get(format!("https://localhost:{port}/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    assert!(server.join().unwrap().starts_with("GET /ping HTTP/1.1\r\n"));
}
