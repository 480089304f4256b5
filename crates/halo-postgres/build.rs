//! `embed_migrations!` reads `migrations/` at compile time; without this, adding a migration
//! file would not rebuild the crate and the binaries would run the old set.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
