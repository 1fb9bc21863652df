//! The HTTP server against a real SQLite store, and its OpenAPI description
//! (docs/openapi.json) against the routes the server is built from.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tdmon_core::hoster::HosterMap;
use tdmon_core::norm::Norms;
use tdmon_core::notice::NoticeRules;
use tdmon_http::{Api, HttpConfig, Parts, Probe, Serving};
use tdmon_store::Store;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "api-test-token-0123456789";

fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_openapi_description_lists_exactly_the_routes_served() {
    let spec = openapi();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = tdmon_http::routes()
        .into_iter()
        .map(|(path, method)| (path.to_owned(), method.to_string()))
        .collect();
    assert_eq!(documented, served);
}

struct Server {
    serving: Option<Serving>,
    stop: CancellationToken,
    http: reqwest::Client,
    spec: Value,
}

impl Server {
    async fn start(parts: Parts, token: &str, max_body_bytes: usize) -> Self {
        let settings = HttpConfig {
            listen: "127.0.0.1:0".into(),
            token: token.into(),
            max_body_bytes,
        }
        .validate()
        .unwrap();
        let stop = CancellationToken::new();
        let serving = tdmon_http::serve(&settings, parts, stop.clone())
            .await
            .unwrap()
            .expect("an address is configured");
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            serving: Some(serving),
            stop,
            http: reqwest::Client::new(),
            spec: openapi(),
        }
    }

    fn address(&self) -> SocketAddr {
        self.serving.as_ref().unwrap().address
    }

    /// Sends the request; asserts the answer's status is `expected` and that
    /// the OpenAPI description documents it for this operation.
    async fn expect(
        &self,
        request: reqwest::RequestBuilder,
        operation: (&str, &str),
        expected: u16,
    ) -> String {
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        assert_eq!(status, expected, "{operation:?}: {body}");
        let (path, method) = operation;
        assert!(
            self.spec["paths"][path][method]["responses"][status.to_string()].is_object(),
            "{method} {path} answers {status}, which docs/openapi.json does not document"
        );
        body
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address())
    }

    async fn stop(mut self) {
        self.stop.cancel();
        self.serving.take().unwrap().stopped().await;
    }
}

fn failing_probe() -> Probe {
    Arc::new(|| Box::pin(async { Err("refused".to_owned()) }))
}

#[tokio::test]
async fn the_api_takes_notices_shows_urls_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let parts = Parts {
        probes: vec![("store", tdmon_http::store_probe(store.clone()))],
        api: Some(Api::new(
            store.clone(),
            NoticeRules::default(),
            HosterMap::default(),
            Norms::default(),
        )),
        phases_from: Some(store.clone()),
    };
    let server = Server::start(parts, TOKEN, 4096).await;
    let http = &server.http;
    let notices = ("/notices", "post");

    let ready = server
        .expect(http.get(server.url("/readyz")), ("/readyz", "get"), 200)
        .await;
    assert_eq!(ready, "store: ok\n");
    server
        .expect(http.get(server.url("/healthz")), ("/healthz", "get"), 200)
        .await;

    let at = chrono::Utc::now().to_rfc3339();
    let csv = format!("url,notified_at\nhttp://a.example/1,{at}\n");
    let post = |content_type: &str, body: String| {
        http.post(server.url("/notices"))
            .header("content-type", content_type)
            .body(body)
    };
    server
        .expect(post("text/csv", csv.clone()), notices, 401)
        .await;
    server
        .expect(
            post("text/csv", csv.clone()).bearer_auth("wrong-token-0123456789"),
            notices,
            401,
        )
        .await;
    server
        .expect(
            post("text/plain", csv.clone()).bearer_auth(TOKEN),
            notices,
            415,
        )
        .await;
    server
        .expect(
            post("text/csv", String::new()).bearer_auth(TOKEN),
            notices,
            400,
        )
        .await;
    server
        .expect(
            post("application/json", "{}".into()).bearer_auth(TOKEN),
            notices,
            400,
        )
        .await;
    server
        .expect(
            post("text/csv", "x".repeat(5000)).bearer_auth(TOKEN),
            notices,
            413,
        )
        .await;

    let array = format!(
        r#"[{{"url":"http://b.example/2","notified_at":"{at}","notice_id":"N-2"}},{{"url":"http://b.example/3"}}]"#
    );
    let answer: Value = serde_json::from_str(
        &server
            .expect(
                post("application/json", array).bearer_auth(TOKEN),
                notices,
                200,
            )
            .await,
    )
    .unwrap();
    assert_eq!(answer["added"][0]["line"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["line"], 2, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "notified_at", "{answer}");
    let url_id = answer["added"][0]["url_id"].as_i64().unwrap();
    let ndjson = format!(
        "{{\"url\":\"http://b.example/2\",\"notified_at\":\"{at}\",\"notice_id\":\"N-2\"}}\n"
    );
    let again: Value = serde_json::from_str(
        &server
            .expect(
                post("application/x-ndjson", ndjson).bearer_auth(TOKEN),
                notices,
                200,
            )
            .await,
    )
    .unwrap();
    assert_eq!(again["added"], Value::Array(vec![]), "{again}");
    assert_eq!(again["already_stored"][0]["line"], 1, "{again}");

    let url = ("/urls/{id}", "get");
    let shown: Value = serde_json::from_str(
        &server
            .expect(
                http.get(server.url(&format!("/urls/{url_id}")))
                    .bearer_auth(TOKEN),
                url,
                200,
            )
            .await,
    )
    .unwrap();
    assert_eq!(shown["state"]["subject"]["url"], "http://b.example/2");
    assert_eq!(shown["state"]["phase"], "pending");
    assert_eq!(shown["observations"], Value::Array(vec![]));
    server
        .expect(http.get(server.url(&format!("/urls/{url_id}"))), url, 401)
        .await;
    server
        .expect(
            http.get(server.url("/urls/999999")).bearer_auth(TOKEN),
            url,
            404,
        )
        .await;
    server
        .expect(
            http.get(server.url("/urls/abc")).bearer_auth(TOKEN),
            url,
            400,
        )
        .await;

    let hosters = ("/hosters", "get");
    let figures: Value = serde_json::from_str(
        &server
            .expect(
                http.get(server.url("/hosters")).bearer_auth(TOKEN),
                hosters,
                200,
            )
            .await,
    )
    .unwrap();
    assert_eq!(figures["totals"]["notices"], 1, "{figures}");
    assert_eq!(figures["max_age_seconds"], 60, "{figures}");
    assert_eq!(
        figures["rows"].as_array().map(Vec::len),
        Some(1),
        "{figures}"
    );
    server
        .expect(http.get(server.url("/hosters")), hosters, 401)
        .await;

    let metrics = server
        .expect(http.get(server.url("/metrics")), ("/metrics", "get"), 200)
        .await;
    assert!(
        metrics.contains("tdmon_urls{phase=\"pending\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tdmon_notices_total{source=\"http\",result=\"added\"} 1"),
        "{metrics}"
    );
    server.stop().await;
    store.close().await;
}

#[tokio::test]
async fn without_a_token_or_an_api_writes_are_refused_and_readiness_names_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let no_token = Parts {
        probes: vec![("broker", failing_probe())],
        api: Some(Api::new(
            store.clone(),
            NoticeRules::default(),
            HosterMap::default(),
            Norms::default(),
        )),
        phases_from: None,
    };
    let server = Server::start(no_token, "", 1024).await;
    let post = server
        .http
        .post(server.url("/notices"))
        .header("content-type", "text/csv")
        .bearer_auth(TOKEN)
        .body("url,notified_at\n");
    server.expect(post, ("/notices", "post"), 403).await;
    let ready = server
        .expect(
            server.http.get(server.url("/readyz")),
            ("/readyz", "get"),
            503,
        )
        .await;
    assert_eq!(ready, "broker: refused\n");
    server.stop().await;

    let no_api = Parts {
        probes: Vec::new(),
        api: None,
        phases_from: None,
    };
    let server = Server::start(no_api, TOKEN, 1024).await;
    let get = server.http.get(server.url("/urls/1")).bearer_auth(TOKEN);
    server.expect(get, ("/urls/{id}", "get"), 404).await;
    server.stop().await;
    store.close().await;
}
