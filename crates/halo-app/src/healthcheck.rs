//! `<binary> healthcheck`: asks the service of this container for `/healthz` over loopback and
//! exits 0 when it answers 200. It is the image's Docker `HEALTHCHECK` (the slim runtime image
//! has no curl); Kubernetes and Cloud Run probe `/healthz` and `/readyz` over HTTP themselves.

use crate::Service;
use halo_config::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The whole check (connect, send, first line of the answer) must fit in this.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The status line is all that is read.
const MAX_STATUS_LINE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot talk to the service: {0}")]
    Io(#[from] std::io::Error),
    #[error("answered {0:?}")]
    Status(String),
}

/// The subcommand: checks the port and address `service` listens on with this configuration.
pub async fn healthcheck(config: &Config, service: Service) -> ExitCode {
    let addr = SocketAddr::new(reachable(config.bind_addr), service.port(config));
    match check_health(addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("healthcheck {} at {addr}: {error}", service.name());
            ExitCode::FAILURE
        }
    }
}

/// `GET /healthz` at `addr` answers 200.
pub async fn check_health(addr: SocketAddr) -> Result<(), HealthcheckError> {
    let status = tokio::time::timeout(TIMEOUT, status_line(addr, "/healthz"))
        .await
        .map_err(|_| HealthcheckError::Timeout(TIMEOUT))??;
    match status.split_ascii_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(HealthcheckError::Status(status)),
    }
}

async fn status_line(addr: SocketAddr, path: &str) -> Result<String, HealthcheckError> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = Vec::with_capacity(MAX_STATUS_LINE);
    let mut chunk = [0u8; MAX_STATUS_LINE];
    while !buffer.contains(&b'\n') && buffer.len() < MAX_STATUS_LINE {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let line = buffer.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).trim().to_owned())
}

/// Where to reach a server bound to `bind`: the loopback of its family when it listens on every
/// address (0.0.0.0 or ::), else that address.
fn reachable(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;
    use std::net::IpAddr;

    fn check(bind: &str, expected: &str) {
        let bind: IpAddr = bind.parse().expect("an address");
        assert_eq!(reachable(bind).to_string(), expected, "{bind}");
    }

    #[test]
    fn every_address_is_probed_on_loopback() {
        check("0.0.0.0", "127.0.0.1");
        check("::", "::1");
        check("127.0.0.1", "127.0.0.1");
        check("10.1.2.3", "10.1.2.3");
    }
}
