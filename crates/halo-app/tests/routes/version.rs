//! `GET /version` on both services names the service, the workspace version and the git
//! revision baked in at build time; the image's `healthcheck` subcommand passes against a serving
//! instance and fails where nothing listens.

use crate::harness::{Api, Stack};
use serde_json::json;
use std::net::SocketAddr;

#[tokio::test]
async fn both_services_report_their_build_and_pass_the_healthcheck() {
    let stack = Stack::start().await;
    for (api, service, port) in [
        (Api::Public, "public-api", stack.public.port),
        (Api::Internal, "internal-api", stack.internal.port),
    ] {
        let (status, body) = stack.get(api, "/version", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({
                "service": service,
                "version": env!("CARGO_PKG_VERSION"),
                "git_revision": halo_build_info::GIT_REVISION,
            })
        );
        assert!(!body["git_revision"].as_str().unwrap().is_empty());

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        halo_app::check_health(addr)
            .await
            .unwrap_or_else(|e| panic!("{service} healthcheck: {e}"));
    }

    // A port nobody listens on: bind one, learn its number, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    assert!(halo_app::check_health(closed).await.is_err());
    stack.stop().await;
}
