//! Path normalisation, route decisions and request classification on a fixed configuration.
//!
//! Input: the first byte picks the method, the rest is the request target. Asserts that
//! normalisation is idempotent, that what the upstream receives classifies to the same decision
//! and path as the request did, and that no path under a denied or authenticated prefix is public.
#![no_main]

use std::sync::LazyLock;

use authgate::internals::classify::{Class, Layout, classify};
use authgate::internals::routes::{Access, RouteRule, RouteTable, normalise_path};
use http::uri::PathAndQuery;
use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;

/// The rules, as `[[routes]]` entries would give them: (pattern, methods, access).
const RULES: [(&str, Option<&[&str]>, Access); 9] = [
    ("/public/**", Some(&["GET", "HEAD"]), Access::Public),
    ("/admin/**", None, Access::Deny),
    ("/internal/**", None, Access::Deny),
    ("/private/**", None, Access::Authenticated),
    ("/api/**", Some(&["POST", "PUT", "PATCH", "DELETE"]), Access::Authenticated),
    ("/api/**", None, Access::Public),
    ("/assets/*.css", None, Access::Public),
    ("/files/*/raw", Some(&["GET"]), Access::Public),
    ("/", None, Access::Public),
];

static ROUTES: LazyLock<RouteTable> = LazyLock::new(|| {
    let rules = RULES
        .iter()
        .map(|&(pattern, methods, access)| {
            let methods = methods.map(|m| m.iter().map(|m| m.to_string()).collect());
            RouteRule::new(pattern, methods, access).expect("the fuzz rules are valid")
        })
        .collect();
    RouteTable::new(rules, false)
});

fn layout() -> Layout<'static> {
    Layout {
        health_path: "/healthz",
        ready_path: "/readyz",
        auth_prefix: "/auth",
        routes: &ROUTES,
        pages: true,
        jwks: true,
    }
}

const UPSTREAM: &str = "http://127.0.0.1:9000";

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
        let _ = ROUTES.decide(method.as_str(), &once);
    }

    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let Ok(Class::Proxy {
        path_and_query,
        decision,
    }) = classify(&layout(), &method, &uri)
    else {
        return;
    };
    let normalised = normalise_path(uri.path()).expect("classified, so normalised");
    let path = path_and_query.split('?').next().unwrap_or_default();
    assert_eq!(path, normalised, "target {target:?}");

    // What the upstream receives, built as the forwarder builds it, classifies the same way.
    let mut parts = Uri::from_static(UPSTREAM).into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse::<PathAndQuery>()
            .unwrap_or_else(|e| panic!("{target:?} forwards as {path_and_query:?}: {e}")),
    );
    let upstream = Uri::from_parts(parts).expect("a URI the forwarder can send");
    match classify(&layout(), &method, &upstream) {
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
            other
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
