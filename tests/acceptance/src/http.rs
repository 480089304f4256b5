//! A small JSON-over-HTTP client: every call answers a status and a JSON body.

use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

#[derive(Clone)]
pub struct Http(reqwest::Client);

/// One answer: the status and the body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// The `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// The `X-Request-Id` header.
    pub request_id: Option<String>,
}

impl Reply {
    /// The `error.code` of an error body, or "".
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Panics with the whole reply unless the status is `status`.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected reply: {self:?}");
        self.body
    }
}

impl Default for Http {
    fn default() -> Self {
        Self(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("http client"),
        )
    }
}

impl Http {
    /// A client whose connections leave from `address` (e.g. 127.0.0.2: another "client IP").
    pub fn from_address(address: std::net::IpAddr) -> Self {
        Self(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .local_address(address)
                .build()
                .expect("http client"),
        )
    }

    /// Sends `body` (when given) as JSON with an optional bearer token.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.call_with(method, url, token, body, &[]).await
    }

    /// `GET url` carrying a W3C `traceparent` (the trace-context tests).
    pub async fn get_traced(&self, url: &str, traceparent: &str) -> Reply {
        let headers = [("traceparent", traceparent)];
        self.call_with(Method::GET, url, None, None, &headers).await
    }

    /// `call` with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.0.request(method.clone(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            retry_after,
            request_id,
        }
    }

    /// The raw text of a GET (for `/metrics`).
    pub async fn text(&self, url: &str) -> String {
        self.0
            .get(url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"))
            .text()
            .await
            .expect("body")
    }

    /// True when `url` answers at all within a short deadline (readiness polling).
    pub async fn answers(&self, url: &str) -> bool {
        self.0
            .get(url)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok()
    }
}
