//! Path normalisation, route decisions and request classification on a fixed configuration.
//!
//! Input: the first byte picks the method, the rest is the request target. Asserts that
//! normalisation is idempotent, that what the upstream receives classifies to the same decision
//! and path as the request did, and that no path under a denied or authenticated prefix is public.
#![no_main]

use std::sync::LazyLock;

use authgate::Config;
use authgate::internals::classify::Class;
use authgate::internals::dispatch::{classify, explain};
use authgate::internals::routes::{Access, normalise_path};
use http::uri::PathAndQuery;
use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::parse(
        r#"
[server]
listen = "127.0.0.1:0"
auth_prefix = "/auth"
[upstream]
url = "http://127.0.0.1:9000"
[tokens]
secret = "fuzz-path-routes-secret-0123456789-abcdefghijklmnop"
[store]
path = "/nonexistent/authgate-fuzz.db"
[[routes]]
path = "/public/**"
methods = ["GET", "HEAD"]
access = "public"
[[routes]]
path = "/admin/**"
access = "deny"
[[routes]]
path = "/internal/**"
access = "deny"
[[routes]]
path = "/private/**"
access = "authenticated"
[[routes]]
path = "/api/**"
methods = ["POST", "PUT", "PATCH", "DELETE"]
access = "authenticated"
[[routes]]
path = "/api/**"
access = "public"
[[routes]]
path = "/assets/*.css"
access = "public"
[[routes]]
path = "/files/*/raw"
methods = ["GET"]
access = "public"
[[routes]]
path = "/"
access = "public"
"#,
    )
    .expect("the fuzz configuration is valid")
});

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get",
];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = Method::from_bytes(METHODS[m as usize % METHODS.len()].as_bytes()).unwrap();
    let target = String::from_utf8_lossy(rest);

    // Normalisation is idempotent, and any normalised path can be decided on.
    if let Ok(once) = normalise_path(&target) {
        assert_eq!(normalise_path(&once), Ok(once.clone()), "input {target:?}");
        let _ = CONFIG.routes.decide(method.as_str(), &once);
    }
    let _ = explain(&CONFIG, method.as_str(), &target);

    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let Ok(Class::Proxy {
        path_and_query,
        decision,
    }) = classify(&CONFIG, &method, &uri)
    else {
        return;
    };
    let normalised = normalise_path(uri.path()).expect("classified, so normalised");
    let path = path_and_query.split('?').next().unwrap_or_default();
    assert_eq!(path, normalised, "target {target:?}");

    // What the upstream receives, built as the forwarder builds it, classifies the same way.
    let mut parts = CONFIG.upstream.base.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse::<PathAndQuery>()
            .unwrap_or_else(|e| panic!("{target:?} forwards as {path_and_query:?}: {e}")),
    );
    let upstream = Uri::from_parts(parts).expect("a URI the forwarder can send");
    match classify(&CONFIG, &method, &upstream) {
        Ok(Class::Proxy {
            path_and_query: again,
            decision: decided_again,
        }) => {
            assert_eq!(again, path_and_query, "target {target:?}");
            assert_eq!(decided_again, decision, "{method} {target:?} -> {upstream}");
        }
        other => panic!(
            "{method} {target:?} was forwarded as {path_and_query:?} under {decision:?}, \
             which classifies as {:?}",
            other.map_err(|e| e.message())
        ),
    }

    // A path under a denied or authenticated prefix is never public.
    let first = normalised[1..].split('/').next().unwrap_or_default();
    let required = match first {
        "admin" | "internal" => Some(Access::Deny),
        "private" => Some(Access::Authenticated),
        "api"
            if matches!(
                method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ) =>
        {
            Some(Access::Authenticated)
        }
        _ => None,
    };
    if let Some(required) = required {
        assert_eq!(
            decision.access, required,
            "{method} {target:?} (normalised {normalised:?})"
        );
    }
});
