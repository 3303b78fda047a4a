//! Marks the tests that need something outside Rust as ignored, with the reason, when it is not
//! configured, so a plain `cargo test` says what it skipped: the PostgreSQL tests without
//! `AUTHGATE_TEST_DATABASE_URL`, the browser tests without `AUTHGATE_TEST_CHROMEDRIVER`, the
//! Flask-JWT-Extended tests without `AUTHGATE_TEST_PYTHON`.

fn main() {
    for (variable, cfg) in [
        ("AUTHGATE_TEST_DATABASE_URL", "no_test_database"),
        ("AUTHGATE_TEST_CHROMEDRIVER", "no_test_browser"),
        ("AUTHGATE_TEST_PYTHON", "no_test_python"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var(variable).map_or(true, |value| value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
