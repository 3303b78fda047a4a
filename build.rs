//! Marks the PostgreSQL tests as ignored, with the reason, when no test database is configured, so
//! a plain `cargo test` says what it skipped.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_test_database)");
    println!("cargo::rerun-if-env-changed=AUTHGATE_TEST_DATABASE_URL");
    if std::env::var("AUTHGATE_TEST_DATABASE_URL").map_or(true, |url| url.is_empty()) {
        println!("cargo::rustc-cfg=no_test_database");
    }
}
