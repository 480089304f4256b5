//! A Server-Sent Events client for the apps' streams (`GET /api/{mitra,client}/events`), read
//! chunk by chunk as an app would: frames split on blank lines, comments (`: ping`) and the
//! `retry:` preamble skipped. Dropping it closes the connection abruptly.

use crate::http::Reply;
use serde_json::Value;
use std::time::Duration;

/// One event as the app receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (pings) seen so far.
    pub comments: usize,
}

/// A client without a total deadline (a stream lasts as long as the test wants it).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("sse client")
}

/// Opens a stream; a refusal (any status but 200) comes back as the JSON reply.
pub async fn open(
    url: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> Result<EventStream, Reply> {
    let mut request = client().get(url).bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = tokio::time::timeout(Duration::from_secs(15), request.send())
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no response head"))
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.text().await.unwrap_or_default();
        return Err(Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            retry_after: None,
            request_id: None,
        });
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "text/event-stream");
    Ok(EventStream {
        response,
        buffer: String::new(),
        comments: 0,
    })
}

impl EventStream {
    /// The next event within `wait`; `None` if none came (or the server ended the stream).
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None) | Err(_)) | Err(_) => return None,
            }
        }
    }

    /// The next event, which must come within 10 s.
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("an event within 10 s")
    }

    /// A customer stream's next event other than `availability` (which comes whenever the
    /// fleet goes between nobody and somebody available, SPEC §12.9), within 10 s each.
    pub async fn next_session(&mut self) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event != "availability" {
                return event;
            }
        }
    }

    /// Every event that arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next_within(wait).await {
            events.push(event);
        }
        events
    }

    /// One complete frame out of the buffer, if there is one with an event in it.
    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let frame: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, None);
            for line in frame.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).expect("JSON data"));
                }
            }
            if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                return Some(SseEvent { id, event, data });
            }
        }
    }
}
