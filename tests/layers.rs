//! The layers stay one-way: core ← config ← {store, upstream} ← services ← http, and `lib.rs` and
//! `main.rs` above them all. Read from each source file's `crate::…` paths, so an import that goes
//! the wrong way fails `cargo test` before anyone builds on it. The core also stays pure: no
//! tokio, hyper or sqlx.

use std::path::{Path, PathBuf};

/// The layer a source file (relative to `src/`) belongs to.
fn layer_of(file: &Path) -> &'static str {
    let first = file
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    match first.trim_end_matches(".rs") {
        "core" => "core",
        "config" => "config",
        "store" => "store",
        "upstream" => "upstream",
        "services" => "services",
        "http" => "http",
        "lib" | "main" | "start" | "admin" | "keygen" => "top",
        other => panic!("{} is in no layer ({other}): add it to one", file.display()),
    }
}

/// What each layer may import from.
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "core" => &["core"],
        "config" => &["core", "config"],
        "store" => &["core", "config", "store"],
        "upstream" => &["core", "config", "upstream"],
        "services" => &["core", "config", "store", "services"],
        "http" => &["core", "config", "store", "upstream", "services", "http"],
        "top" => &[
            "core",
            "config",
            "store",
            "upstream",
            "services",
            "http",
            "internals",
        ],
        other => panic!("unknown layer {other}"),
    }
}

/// The layer a `crate::` path's first segment names (`crate::Config` is the config's).
fn target_layer(segment: &str) -> &str {
    match segment {
        "Config" => "config",
        other => other,
    }
}

/// The first segment of every `crate::` path in `source`, braces included (`crate::{a, b::c}`).
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices("crate::") {
        // `$crate::` in macros is not ours.
        if source[..at].ends_with('$') {
            continue;
        }
        let rest = &source[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// Every wrong-way import in `source`, a file of `layer`.
fn violations(layer: &str, source: &str) -> Vec<String> {
    let mut wrong: Vec<String> = crate_paths(source)
        .iter()
        .map(|segment| target_layer(segment).to_string())
        .filter(|target| !allowed(layer).contains(&target.as_str()))
        .map(|target| format!("{layer} imports {target}"))
        .collect();
    if layer == "core" {
        for io in ["tokio", "hyper", "sqlx"] {
            if source
                .lines()
                .any(|l| l.trim_start().starts_with("use ") && l.contains(&format!("{io}::")))
            {
                wrong.push(format!("core uses {io}"));
            }
        }
    }
    wrong
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_goes_one_way_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let layer = layer_of(relative);
        let source = std::fs::read_to_string(file).unwrap();
        for v in violations(layer, &source) {
            wrong.push(format!("{}: {v}", relative.display()));
        }
    }
    assert!(files.len() > 20, "read only {} files", files.len());
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// The check itself can fail: each wrong way it must catch, and the right ways it must let by.
#[test]
fn the_layer_check_catches_imports_that_go_the_wrong_way() {
    assert_eq!(
        violations("core", "use crate::http::error::ApiError;"),
        ["core imports http"]
    );
    assert_eq!(
        violations("config", "use crate::{core::routes, store::Store};"),
        ["config imports store"]
    );
    assert_eq!(
        violations("store", "let x = crate::upstream::Body::default();"),
        ["store imports upstream"]
    );
    assert_eq!(
        violations("upstream", "use crate::services::password;"),
        ["upstream imports services"]
    );
    assert_eq!(
        violations("core", "use tokio::net::TcpStream;"),
        ["core uses tokio"]
    );
    assert!(violations("http", "use crate::{core::token, store::Store, Config};").is_empty());
    assert!(violations("services", "use crate::store::Store;").is_empty());
    assert!(violations("core", "macro_rules! m { () => { $crate::x } }").is_empty());
}

/// The library's API is `run`, `Config`, `admin`, `keygen` and what they need; everything else is
/// `pub(crate)`, reached by benches and fuzz targets only through `internals`.
#[test]
fn only_the_api_and_internals_are_public_at_the_root() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let public_modules: Vec<&str> = lib.lines().filter(|l| l.starts_with("pub mod ")).collect();
    assert_eq!(
        public_modules,
        ["pub mod admin;", "pub mod keygen;", "pub mod internals {"]
    );
}
