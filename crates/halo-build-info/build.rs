//! Bakes the git revision into the crate as `HALO_GIT_REVISION`: `git rev-parse` of the work
//! tree when there is one, else the `HALO_GIT_REVISION` environment variable (the Dockerfile's
//! build argument: `.git` is not in the image's build context), else "unknown".
//!
//! Only this leaf crate reruns when HEAD moves, so a commit rebuilds it and its few dependents,
//! not the workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

const VARIABLE: &str = "HALO_GIT_REVISION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={VARIABLE}");
    let revision = from_git()
        .or_else(|| std::env::var(VARIABLE).ok().and_then(|v| clean(&v)))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env={VARIABLE}={revision}");
}

/// The short revision of HEAD, and the files to watch so that a commit, checkout or rebase
/// reruns this script (only files that exist: a missing one would rerun it on every build).
fn from_git() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).and_then(|r| clean(&r))?;
    let mut watched = vec![git_path("HEAD"), git_path("packed-refs")];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git_path(reference.trim()));
    }
    for path in watched.into_iter().flatten() {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(revision)
}

fn git_path(name: &str) -> Option<PathBuf> {
    let path = git(&["rev-parse", "--path-format=absolute", "--git-path", name])?;
    Some(Path::new(path.trim()).to_path_buf())
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// One token of printable ASCII (a revision, a tag), or nothing: the value goes into a
/// `cargo:` line and an HTTP answer.
fn clean(raw: &str) -> Option<String> {
    let value = raw.trim();
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    ok.then(|| value.to_owned())
}
