//! Building the connection: TCP_NODELAY on (off by default in redis 1.x), a TCP user timeout
//! so a black-holed peer is dropped, short connect/response timeouts, and lazy connect so an
//! instance starts (degraded) while Valkey is down.

use halo_ports::MirrorError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::IntoConnectionInfo;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ValkeySettings {
    pub url: String,
    pub key_prefix: String,
    /// Deadline of every call.
    pub timeout: Duration,
}

/// The client (for pub/sub connections) and the shared, self-reconnecting command connection.
pub fn connect(
    settings: &ValkeySettings,
) -> Result<(redis::Client, ConnectionManager), MirrorError> {
    let info = settings
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| MirrorError::Corrupt(format!("invalid VALKEY_URL: {e}")))?;
    let tcp = TcpSettings::default()
        .set_nodelay(true)
        .set_user_timeout(Duration::from_secs(5));
    let client = redis::Client::open(info.set_tcp_settings(tcp))
        .map_err(|e| MirrorError::Corrupt(format!("invalid VALKEY_URL: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
        .set_response_timeout(Some(settings.timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| MirrorError::Unavailable(Box::new(e)))?;
    Ok((client, manager))
}
