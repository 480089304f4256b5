//! Throwaway certificates for TLS tests, made with the `openssl` command line tool in a temp
//! dir: a CA, a server certificate it signed for chosen names, and a second, unrelated CA (the
//! "wrong CA"). EC P-256 keys, valid for two days. The names are the test's choice, so a test
//! can connect under a name the certificate does not carry.

use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The files of one set of test certificates; the directory is removed on drop.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    /// A CA, a server certificate signed by it whose subjectAltName is `san` (e.g.
    /// `"DNS:localhost"`), and another CA that signed nothing.
    ///
    /// # Panics
    ///
    /// When `openssl` is missing or fails (install Debian's `openssl`).
    pub async fn make(san: &str) -> TestCerts {
        let dir =
            std::env::temp_dir().join(format!("halo-certs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let certs = TestCerts { dir };
        certs.make_ca("ca", "halo-test-ca").await;
        certs.make_ca("other-ca", "halo-other-ca").await;
        let ext = certs.dir.join("server.ext");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName = {san}\nbasicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 extendedKeyUsage = serverAuth\n"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", ext.display()));
        certs
            .openssl(&[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=halo-test-server",
            ])
            .await;
        certs
            .openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ])
            .await;
        certs
    }

    async fn make_ca(&self, name: &str, common_name: &str) {
        let key = format!("{name}.key");
        let crt = format!("{name}.crt");
        let subject = format!("/CN={common_name}");
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .await;
    }

    async fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
        assert!(
            output.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The CA that signed the server certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing here (PEM).
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// The server certificate's file (PEM), for a server that reads it itself (stunnel).
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server's private key file (PEM).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The server certificate (PEM).
    pub fn server_cert(&self) -> Vec<u8> {
        read(&self.dir.join("server.crt"))
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> Vec<u8> {
        read(&self.dir.join("server.key"))
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
