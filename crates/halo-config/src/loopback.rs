//! Loopback-only addresses: the tools (load generator, store benchmarks) refuse to send load or
//! read statistics anywhere but this machine.

use std::net::IpAddr;

/// Whether the host of `url` (`scheme://[user@]host[:port][/…]`) is `localhost` or a loopback
/// address (127.0.0.0/8, ::1).
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn loopback_hosts_pass_and_others_do_not() {
        for url in [
            "http://127.0.0.1:3000",
            "http://localhost/x",
            "postgres://halo@127.0.0.1:55434/postgres",
            "redis://:secret@[::1]:6379/0",
            "redis://127.9.9.9",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.1:3000",
            "postgres://halo@127.0.0.1.example.com/db",
            "http://example.com/?next=//127.0.0.1",
            "redis://user@example.com:6379",
            "127.0.0.1:3000",
            "http://[2001:db8::1]/",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
