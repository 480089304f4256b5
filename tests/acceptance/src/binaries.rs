//! The two service binaries, built once per test process.
//!
//! `HALO_BIN_DIR` names a directory that already holds `public-api` and `internal-api` (a CI step
//! may build them first). Otherwise this runs `cargo build --bin public-api --bin internal-api`
//! into the target directory this test binary lives in (so `CARGO_TARGET_DIR` and the profile
//! match), which is a no-op when they are fresh. The outer `cargo test` has released its build
//! lock by the time tests run, so the nested build does not wait on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug)]
pub struct Binaries {
    pub public_api: PathBuf,
    pub internal_api: PathBuf,
}

/// The binaries, built on first use.
///
/// # Panics
///
/// When the build fails or the binaries are not where the build put them.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let dir = match std::env::var_os("HALO_BIN_DIR").filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => build(),
        };
        let found = Binaries {
            public_api: dir.join("public-api"),
            internal_api: dir.join("internal-api"),
        };
        for bin in [&found.public_api, &found.internal_api] {
            assert!(bin.is_file(), "missing service binary {}", bin.display());
        }
        found
    })
}

/// Builds both binaries with the profile and target directory of this test binary; returns the
/// directory holding them.
fn build() -> PathBuf {
    // This executable is <target>/<profile>/deps/checklist-<hash>.
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary under <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("profile dir under target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("profile dir name");
    let profile = if profile == "debug" { "dev" } else { profile };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("halo-acceptance: building public-api and internal-api ({profile})");
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--profile", profile])
        .args(["--bin", "public-api", "--bin", "internal-api"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of the services failed");
    profile_dir.to_path_buf()
}
