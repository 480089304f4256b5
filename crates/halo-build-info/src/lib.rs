//! What this build is: the workspace version and the git revision it was built from (see
//! `build.rs`). Every crate of the workspace takes its version from `[workspace.package]`, so
//! `VERSION` is also the version of each binary that prints it.

/// The workspace version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision (12 hex digits) of the tree this was built from; the `HALO_GIT_REVISION`
/// build variable when there was no git work tree (an image build), else "unknown".
pub const GIT_REVISION: &str = env!("HALO_GIT_REVISION");

/// What `--version` prints after the binary's name: `0.1.0 (git 0123456789ab)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("HALO_GIT_REVISION"),
    ")"
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_long_version_names_both() {
        assert_eq!(
            super::LONG_VERSION,
            format!("{} (git {})", super::VERSION, super::GIT_REVISION)
        );
        assert!(!super::GIT_REVISION.is_empty());
    }

    /// In a git work tree (development, CI) the revision is HEAD's; a build without one (an
    /// image build) gets its revision from `HALO_GIT_REVISION`, which this cannot check.
    #[test]
    fn the_revision_is_heads_in_a_work_tree() {
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok());
        match head {
            Some(head) => assert_eq!(super::GIT_REVISION, head.trim()),
            None => eprintln!(
                "no git work tree here: GIT_REVISION is {}",
                super::GIT_REVISION
            ),
        }
    }
}
