//! The public API as the apps call it: one pooled HTTP/1.1 client, one method per route the
//! load uses. Every failure becomes an [`ApiFailure`] whose `key` groups the error report.

use halo_config::is_loopback_url;
use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// A request that did not answer as expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiFailure {
    /// The server answered with a non-success status; `code` is the API's error code (SPEC §4.5).
    #[error("HTTP {status} {code}")]
    Status { status: u16, code: String },
    /// No usable answer: connect error, timeout, body that did not parse.
    #[error("transport: {0}")]
    Transport(&'static str),
}

impl ApiFailure {
    /// How the report groups it: `409 NO_BESTIE_AVAILABLE`, `transport timeout`.
    pub fn key(&self) -> String {
        match self {
            Self::Status { status, code } => format!("{status} {code}"),
            Self::Transport(kind) => format!("transport {kind}"),
        }
    }
}

fn transport(error: &reqwest::Error) -> ApiFailure {
    ApiFailure::Transport(if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_decode() {
        "decode"
    } else {
        "other"
    })
}

/// The base URL must be loopback: this tool never sends load anywhere else.
#[derive(Debug, thiserror::Error)]
pub enum BaseUrlError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("{0} is not a loopback address (127.0.0.0/8, ::1 or localhost)")]
    NotLoopback(String),
}

pub fn loopback_url(raw: &str) -> Result<Url, BaseUrlError> {
    let url = Url::parse(raw).map_err(|_| BaseUrlError::Invalid(raw.to_owned()))?;
    if is_loopback_url(raw) {
        Ok(url)
    } else {
        Err(BaseUrlError::NotLoopback(
            url.host_str().unwrap_or_default().to_owned(),
        ))
    }
}

/// A logged-in user: the bearer token.
#[derive(Debug, Clone)]
pub struct Login {
    pub token: String,
}

#[derive(Deserialize)]
struct LoginBody {
    access_token: String,
}

#[derive(Deserialize)]
struct BlastBody {
    session_id: Uuid,
    #[serde(default)]
    notified: usize,
}

/// A blast's answer: the new session, and how many mitras its first round reached.
#[derive(Debug, Clone, Copy)]
pub struct Blasted {
    pub session: Uuid,
    pub notified: usize,
}

#[derive(Clone)]
pub struct Api {
    http: Client,
    base: Url,
    /// The service's `/metrics` (public-api serves them on an admin port of their own).
    metrics: Option<Url>,
}

impl Api {
    pub fn new(base: Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        // Loopback only, so no proxy; Nagle off like the server side.
        let http = Client::builder()
            .timeout(timeout)
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base,
            metrics: None,
        })
    }

    /// Where the service's `/metrics` are (by default `<base>/metrics`).
    pub fn with_metrics_url(mut self, url: Url) -> Self {
        self.metrics = Some(url);
        self
    }

    fn url(&self, path: &str) -> Result<Url, ApiFailure> {
        self.base
            .join(path)
            .map_err(|_| ApiFailure::Transport("bad path"))
    }

    /// Sends one request; a non-2xx answer becomes `ApiFailure::Status` with the error code.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, ApiFailure> {
        let mut request = self.http.request(method, self.url(path)?);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport(&e))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(ApiFailure::Status {
            status: status.as_u16(),
            code: error_code(&value, status),
        })
    }

    /// `POST /api/{mitra,client}/auth/otp/request` then `/verify` with the dev code.
    pub async fn login(&self, role: &str, phone: &str, code: &str) -> Result<Login, ApiFailure> {
        let prefix = format!("/api/{role}/auth/otp");
        self.send(
            Method::POST,
            &format!("{prefix}/request"),
            None,
            Some(json!({ "phone": phone })),
        )
        .await?;
        let body = self
            .send(
                Method::POST,
                &format!("{prefix}/verify"),
                None,
                Some(json!({ "phone": phone, "code": code })),
            )
            .await?;
        let login: LoginBody =
            serde_json::from_value(body).map_err(|_| ApiFailure::Transport("decode"))?;
        Ok(Login {
            token: login.access_token,
        })
    }

    pub async fn go_online(&self, token: &str) -> Result<(), ApiFailure> {
        self.send(Method::POST, "/api/mitra/status/online", Some(token), None)
            .await
            .map(drop)
    }

    pub async fn heartbeat(&self, token: &str) -> Result<(), ApiFailure> {
        self.send(
            Method::POST,
            "/api/mitra/status/heartbeat",
            Some(token),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn beacon(&self) -> Result<(), ApiFailure> {
        self.send(Method::GET, "/public/bestie-availability", None, None)
            .await
            .map(drop)
    }

    pub async fn whoami(&self, token: &str) -> Result<(), ApiFailure> {
        self.send(Method::GET, "/api/shared/whoami", Some(token), None)
            .await
            .map(drop)
    }

    /// A customer's blast: the new session and the mitras it reached.
    pub async fn blast(&self, token: &str, minutes: u32) -> Result<Blasted, ApiFailure> {
        let body = self
            .send(
                Method::POST,
                "/api/client/chat/requests",
                Some(token),
                Some(json!({ "minutes": minutes })),
            )
            .await?;
        let created: BlastBody =
            serde_json::from_value(body).map_err(|_| ApiFailure::Transport("decode"))?;
        Ok(Blasted {
            session: created.session_id,
            notified: created.notified,
        })
    }

    /// What the mitra app polls to see blasts.
    pub async fn open_requests(&self, token: &str) -> Result<(), ApiFailure> {
        self.send(Method::GET, "/api/mitra/chat/requests", Some(token), None)
            .await
            .map(drop)
    }

    pub async fn accept(&self, token: &str, session: Uuid) -> Result<(), ApiFailure> {
        let path = format!("/api/mitra/chat/requests/{session}/accept");
        self.send(Method::POST, &path, Some(token), None)
            .await
            .map(drop)
    }

    pub async fn end(&self, token: &str, session: Uuid) -> Result<(), ApiFailure> {
        let path = format!("/api/mitra/chat/sessions/{session}/end");
        self.send(Method::POST, &path, Some(token), None)
            .await
            .map(drop)
    }

    /// The customer cancels (or ends) its session.
    pub async fn cancel(&self, token: &str, session: Uuid) -> Result<(), ApiFailure> {
        let path = format!("/api/client/chat/sessions/{session}/end");
        self.send(Method::POST, &path, Some(token), None)
            .await
            .map(drop)
    }

    /// The service's Prometheus text (`/metrics`).
    pub async fn metrics_text(&self) -> Result<String, ApiFailure> {
        let response = self
            .http
            .get(match &self.metrics {
                Some(url) => url.clone(),
                None => self.url("/metrics")?,
            })
            .send()
            .await
            .map_err(|e| transport(&e))?;
        response.text().await.map_err(|e| transport(&e))
    }
}

fn error_code(body: &Value, status: StatusCode) -> String {
    body.pointer("/error/code")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP_{}", status.as_u16()), str::to_owned)
}
