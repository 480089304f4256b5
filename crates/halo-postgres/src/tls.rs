//! TLS to Postgres with libpq's meaning of `sslmode` and `sslrootcert` in `DATABASE_URL`, on
//! rustls with the aws-lc-rs provider.
//!
//! tokio-postgres parses only `sslmode=disable|prefer|require` and refuses `sslrootcert`, so
//! [`parse_database_url`] takes both out of the URL (or the `key=value` string), hands the rest
//! to tokio-postgres, and keeps them in [`TlsOptions`], which builds the connector:
//!
//! | `sslmode` | encrypts | verifies |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default, as libpq) | when the server offers TLS | nothing |
//! | `require` | always | nothing; the chain (as `verify-ca`) when `sslrootcert` is given |
//! | `verify-ca` | always | the chain up to the `sslrootcert` CA |
//! | `verify-full` | always | the chain and that the certificate names the host |
//!
//! Without `sslrootcert`, `verify-ca` and `verify-full` use `~/.postgresql/root.crt` as libpq
//! does, and refuse to start when it is missing. [`tls_failure`] turns a refused handshake into
//! a sentence saying why (wrong CA, wrong host name, no TLS on the server).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values this service supports (`allow` is not one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(raw: &str) -> Result<Self, TlsSetupError> {
        match raw {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(TlsSetupError::UnknownMode(other.to_owned())),
        }
    }

    /// What tokio-postgres itself is told: whether to ask for TLS and whether to insist.
    fn for_driver(self) -> DriverSslMode {
        match self {
            Self::Disable => DriverSslMode::Disable,
            Self::Prefer => DriverSslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => DriverSslMode::Require,
        }
    }
}

/// The TLS half of `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Why the TLS settings of `DATABASE_URL` cannot be used. Shown after "invalid DATABASE_URL: ".
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(
        "sslmode {0:?} is not supported (use disable, prefer, require, verify-ca or verify-full)"
    )]
    UnknownMode(String),
    #[error("sslmode={0} verifies the server but no CA is given: add sslrootcert=<CA file> (libpq's default ~/.postgresql/root.crt does not exist)")]
    NoRootCert(&'static str),
    #[error("cannot read sslrootcert {path}: {problem}")]
    RootCert { path: String, problem: String },
    #[error("the TLS configuration was refused: {0}")]
    Rustls(String),
}

/// Splits `DATABASE_URL` into what tokio-postgres understands and the TLS options it does not.
pub fn parse_database_url(
    url: &str,
) -> Result<(tokio_postgres::Config, TlsOptions), crate::PoolError> {
    let (rest, ssl_mode, root_cert) = take_tls_params(url);
    let mut config =
        tokio_postgres::Config::from_str(&rest).map_err(crate::PoolError::InvalidUrl)?;
    let mode = match ssl_mode {
        Some(raw) => SslMode::parse(&raw).map_err(crate::PoolError::Tls)?,
        None => SslMode::default(),
    };
    config.ssl_mode(mode.for_driver());
    Ok((
        config,
        TlsOptions {
            mode,
            root_cert: root_cert.map(PathBuf::from),
        },
    ))
}

impl TlsOptions {
    /// The rustls connector for these options (also for `disable`, where it is never used).
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, self.root_cert()?) {
            (SslMode::VerifyFull, Some(roots)) => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
            }
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(NameUnchecked {
                roots: Some(Arc::new(roots)),
                algorithms: provider.signature_verification_algorithms,
            }),
            (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), None) => {
                return Err(TlsSetupError::NoRootCert(mode.as_str()))
            }
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Arc::new(NameUnchecked {
                roots: None,
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The CA certificates to verify against: `sslrootcert`, or for the verifying modes libpq's
    /// default file when it exists. `None`: nothing to verify against.
    fn root_cert(&self) -> Result<Option<RootCertStore>, TlsSetupError> {
        let path = match (&self.root_cert, self.mode) {
            (Some(path), SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => {
                path.clone()
            }
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => match default_root_cert() {
                Some(path) => path,
                None => return Ok(None),
            },
            // `prefer` verifies nothing in libpq either; `disable` never uses TLS.
            _ => return Ok(None),
        };
        load_roots(&path).map(Some)
    }
}

/// `~/.postgresql/root.crt`, libpq's default `sslrootcert`, when it exists.
fn default_root_cert() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql").join("root.crt");
    path.is_file().then_some(path)
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let failed = |problem: String| TlsSetupError::RootCert {
        path: path.display().to_string(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| failed(e.to_string()))?;
    }
    Ok(roots)
}

/// The modes that never check the certificate's name. `sslmode=verify-ca` (and `require`
/// with `sslrootcert`): `roots` is set and the chain must lead to one of those CAs.
/// `sslmode=prefer` and `require` without a CA: no roots, the certificate is taken as it comes
/// (libpq's meaning). Either way the handshake signatures are checked, so the server holds the
/// key of the certificate it sent.
#[derive(Debug)]
struct NameUnchecked {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a connection attempt failed in TLS, as a sentence for the operator; `None` when the
/// failure was not about TLS (refused, timed out, wrong password…).
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(tls) = as_rustls_error(current) {
            return Some(explain(tls));
        }
        // tokio-postgres' own words when the server answers the TLS request with "no".
        if current.source().is_none() && current.to_string() == "server does not support TLS" {
            return Some(
                "the server does not accept TLS connections, and sslmode requires TLS".into(),
            );
        }
        cause = current.source();
    }
    None
}

/// A rustls error, also when wrapped in the `io::Error` tokio-rustls returns (whose `source`
/// skips the error it wraps).
fn as_rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn explain(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "the server's certificate is not signed by a CA in sslrootcert (wrong CA?)".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate is not valid for the host name in DATABASE_URL \
              (sslmode=verify-full checks it; verify-ca does not)"
            .into(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet".into(),
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?…`) or a `key=value` string;
/// returns the rest and their values (the last one wins, as in libpq).
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let trimmed = url.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        take_from_url(trimmed)
    } else {
        take_from_key_values(trimmed)
    }
}

fn take_from_url(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, None);
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key).as_str() {
            "sslmode" => mode = Some(percent_decode(value)),
            "sslrootcert" => root = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, root)
}

/// `%XX` escapes decoded (as tokio-postgres decodes URL parameters); a broken escape is kept.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `key = value` syntax: values may be single-quoted, `\` escapes the next character.
fn take_from_key_values(dsn: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut rest = String::new();
    let chars: Vec<char> = dsn.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '=' {
            i += 1;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        let quoted = i < chars.len() && chars[i] == '\'';
        if quoted {
            i += 1;
        }
        while i < chars.len() {
            let c = chars[i];
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                break;
            }
            if c == '\\' && i + 1 < chars.len() {
                i += 1;
            }
            value.push(chars[i]);
            i += 1;
        }
        if quoted && i < chars.len() {
            i += 1; // the closing quote
        }
        let raw: String = chars[start..i].iter().collect();
        match key.as_str() {
            "" => {}
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(&raw);
            }
        }
    }
    (rest, mode, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, rest: &str, mode: Option<&str>, root: Option<&str>) {
        let (got_rest, got_mode, got_root) = take_tls_params(url);
        assert_eq!(
            (got_rest.as_str(), got_mode.as_deref(), got_root.as_deref()),
            (rest, mode, root),
            "for {url}"
        );
    }

    #[test]
    fn tls_params_come_out_of_urls() {
        check("postgres://h/db", "postgres://h/db", None, None);
        check(
            "postgres://u@h:5432/db?sslmode=verify-full",
            "postgres://u@h:5432/db",
            Some("verify-full"),
            None,
        );
        check(
            "postgresql://h/db?application_name=x&sslmode=verify-ca&sslrootcert=/etc/ca.pem&connect_timeout=3",
            "postgresql://h/db?application_name=x&connect_timeout=3",
            Some("verify-ca"),
            Some("/etc/ca.pem"),
        );
        check(
            "postgres://h/db?sslrootcert=%2Fpath%20with%20space%2Fca.pem&sslmode=require",
            "postgres://h/db",
            Some("require"),
            Some("/path with space/ca.pem"),
        );
        check(
            "postgres://h/db?sslmode=disable&sslmode=require",
            "postgres://h/db",
            Some("require"),
            None,
        );
    }

    #[test]
    fn tls_params_come_out_of_key_values() {
        check(
            "host=h dbname=db sslmode=verify-full sslrootcert=/ca.pem",
            "host=h dbname=db",
            Some("verify-full"),
            Some("/ca.pem"),
        );
        check(
            "host = h sslrootcert = '/a b/c\\'s.pem' password='x y'",
            "host = h password='x y'",
            None,
            Some("/a b/c's.pem"),
        );
    }

    fn mode_of(url: &str) -> Result<SslMode, String> {
        parse_database_url(url)
            .map(|(_, tls)| tls.mode)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_libpq_mode_but_allow_is_understood() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            let url = format!("postgres://h/db?sslmode={}", mode.as_str());
            assert_eq!(mode_of(&url), Ok(mode));
        }
        assert_eq!(
            mode_of("postgres://h/db"),
            Ok(SslMode::Prefer),
            "libpq's default"
        );
        let refused = mode_of("postgres://h/db?sslmode=allow").expect_err("allow");
        assert!(refused.contains("DATABASE_URL"), "{refused}");
        assert!(refused.contains("\"allow\""), "{refused}");
    }

    #[test]
    fn the_driver_is_told_to_insist_on_tls_for_every_mode_from_require_up() {
        for (mode, driver) in [
            ("disable", DriverSslMode::Disable),
            ("prefer", DriverSslMode::Prefer),
            ("require", DriverSslMode::Require),
            ("verify-ca", DriverSslMode::Require),
            ("verify-full", DriverSslMode::Require),
        ] {
            let (config, _) =
                parse_database_url(&format!("postgres://h/db?sslmode={mode}")).expect(mode);
            assert_eq!(config.get_ssl_mode(), driver, "{mode}");
        }
    }

    #[test]
    fn a_missing_or_empty_root_cert_is_a_configuration_error() {
        let missing = TlsOptions {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let err = missing.connector().err().expect("missing file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

        let dir = std::env::temp_dir().join(format!("halo-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = TlsOptions {
            mode: SslMode::VerifyCa,
            root_cert: Some(empty.clone()),
        }
        .connector()
        .err()
        .expect("no certificate");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn modes_that_do_not_verify_need_no_ca() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            let options = TlsOptions {
                mode,
                root_cert: None,
            };
            assert!(options.connector().is_ok(), "{mode:?}");
        }
    }

    #[test]
    fn tls_failures_are_explained() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let why = tls_failure(&wrapped).expect("a TLS failure");
        assert!(why.contains("wrong CA"), "{why}");
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(tls_failure(&name).expect("name").contains("host name"));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_failure(&refused), None);
    }
}
