//! What a request is, from its method and target alone: a probe, an auth endpoint, or a request for
//! the app under the rule that decides it. Pure, so that `authgate explain`, the property tests
//! and the fuzz targets see exactly what the gate does.

use http::{Method, Uri};

use crate::core::endpoint::Endpoint;
use crate::core::routes::{
    Decision, PathError, RouteTable, normalise_path, query_method_overrides,
};

/// Where authgate's own paths are, and the rules: all that classifying needs of the configuration.
pub struct Layout<'a> {
    pub health_path: &'a str,
    pub ready_path: &'a str,
    pub auth_prefix: &'a str,
    pub routes: &'a RouteTable,
    /// Whether browsers get the sign-in pages (tokens may come in cookies).
    pub pages: bool,
    /// Whether authgate publishes public keys at `{auth_prefix}/.well-known/jwks.json`.
    pub jwks: bool,
}

/// Where the public keys are, under the auth prefix.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Why a request is refused before any rule is met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The path cannot be normalised safely.
    BadPath(PathError),
    /// Not a method this target takes; the methods it does take, for `Allow`.
    MethodNotAllowed(&'static str),
}

/// What a `405` for `CONNECT` names as allowed: the methods authgate forwards to an app.
pub const PROXIED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// What a request is, decided from its method and target alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Liveness: answered while the process runs, whatever the store does.
    Health,
    /// Readiness: store reachable and revocations loaded.
    Ready,
    Endpoint(Endpoint),
    /// A sign-in, sign-up or sign-out page, for a browser (`GET` or `HEAD` on the endpoint).
    Page(Endpoint),
    /// The public keys that verify authgate's signatures (`GET` or `HEAD`).
    Jwks,
    /// For the upstream, at `path_and_query` (normalised path, query as sent), under `decision`.
    Proxy {
        path_and_query: String,
        decision: Decision,
    },
}

/// Upper-cases a method that has lower-case letters. Methods are case-sensitive (RFC 9110 §9.1),
/// but many apps (Werkzeug, for one) upper-case them before routing: `delete` must meet the rules
/// for `DELETE`, and reach the app as the `DELETE` that the rules decided on.
pub fn normalise_method(method: &mut Method) {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        let upper = method.as_str().to_ascii_uppercase();
        *method = Method::from_bytes(upper.as_bytes()).expect("an upper-cased token is a method");
    }
}

/// Classifies a request: the path is normalised once, and both the rule match and the forwarded
/// path come from that one string. `method` has been through `normalise_method`.
pub fn classify(layout: &Layout<'_>, method: &Method, uri: &Uri) -> Result<Class, Refusal> {
    // A tunnel to wherever the target names: never the app's business, and not authgate's.
    // TRACE and TRACK echo the request back, its cookies included, to a page's script (cross-site
    // tracing): refused, as nginx does.
    if method == Method::CONNECT || method == Method::TRACE || method.as_str() == "TRACK" {
        return Err(Refusal::MethodNotAllowed(PROXIED_METHODS));
    }
    let path = normalise_path(uri.path()).map_err(Refusal::BadPath)?;
    let probe = if path == layout.health_path {
        Some(Class::Health)
    } else if path == layout.ready_path {
        Some(Class::Ready)
    } else {
        None
    };
    if let Some(probe) = probe {
        return match *method {
            Method::GET | Method::HEAD => Ok(probe),
            _ => Err(Refusal::MethodNotAllowed("GET, HEAD")),
        };
    }
    if let Some(rest) = path.strip_prefix(layout.auth_prefix) {
        if layout.jwks && rest == JWKS_PATH {
            return match *method {
                Method::GET | Method::HEAD => Ok(Class::Jwks),
                _ => Err(Refusal::MethodNotAllowed("GET, HEAD")),
            };
        }
        if let Some(endpoint) = Endpoint::ALL.into_iter().find(|e| e.path() == rest) {
            let page = layout.pages && endpoint.has_page();
            return match *method {
                Method::POST => Ok(Class::Endpoint(endpoint)),
                Method::GET | Method::HEAD if page => Ok(Class::Page(endpoint)),
                _ if page => Err(Refusal::MethodNotAllowed("GET, HEAD, POST")),
                _ => Err(Refusal::MethodNotAllowed("POST")),
            };
        }
    }
    let mut decision = layout.routes.decide(method.as_str(), &path);
    // A method an app may be told to run instead, in the query: the request must be allowed as
    // that method too, so it meets the stricter access and the roles of both rules.
    for other in uri.query().into_iter().flat_map(query_method_overrides) {
        decision = decision.and(layout.routes.decide(&other, &path));
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    Ok(Class::Proxy {
        path_and_query,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::routes::{Access, RouteRule};

    fn routes() -> RouteTable {
        let rule = |path: &str, methods: Option<&[&str]>, access| {
            let methods = methods.map(|m| m.iter().map(|s| s.to_string()).collect());
            RouteRule::new(path, methods, access).unwrap()
        };
        RouteTable::new(
            vec![
                rule("/items/**", Some(&["DELETE"]), Access::Deny),
                rule("/items/**", None, Access::Public),
            ],
            false,
        )
    }

    fn classified(method: &str, target: &str) -> Result<Class, Refusal> {
        let routes = routes();
        let layout = Layout {
            health_path: "/healthz",
            ready_path: "/readyz",
            auth_prefix: "/auth",
            routes: &routes,
            pages: false,
            jwks: false,
        };
        let mut method = Method::from_bytes(method.as_bytes()).unwrap();
        normalise_method(&mut method);
        classify(&layout, &method, &target.parse().unwrap())
    }

    fn access(method: &str, target: &str) -> Access {
        match classified(method, target) {
            Ok(Class::Proxy { decision, .. }) => decision.access,
            other => panic!("{method} {target}: {other:?}"),
        }
    }

    #[test]
    fn probes_and_endpoints_come_before_the_rules() {
        assert_eq!(classified("GET", "/healthz"), Ok(Class::Health));
        assert_eq!(classified("head", "/readyz"), Ok(Class::Ready));
        assert_eq!(
            classified("POST", "/healthz"),
            Err(Refusal::MethodNotAllowed("GET, HEAD"))
        );
        assert_eq!(
            classified("post", "/auth/login"),
            Ok(Class::Endpoint(Endpoint::Login))
        );
        assert_eq!(
            classified("GET", "/auth/../auth/login"),
            Err(Refusal::MethodNotAllowed("POST"))
        );
    }

    #[test]
    fn with_cookies_the_sign_in_sign_up_and_sign_out_endpoints_have_pages() {
        let routes = routes();
        let layout = Layout {
            health_path: "/healthz",
            ready_path: "/readyz",
            auth_prefix: "/auth",
            routes: &routes,
            pages: true,
            jwks: false,
        };
        let class = |method: &str, target: &str| {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            classify(&layout, &method, &target.parse().unwrap())
        };
        for endpoint in [Endpoint::Login, Endpoint::Register, Endpoint::Logout] {
            let target = format!("/auth{}?next=/x", endpoint.path());
            assert_eq!(class("GET", &target), Ok(Class::Page(endpoint)));
            assert_eq!(class("HEAD", &target), Ok(Class::Page(endpoint)));
            assert_eq!(class("POST", &target), Ok(Class::Endpoint(endpoint)));
            assert_eq!(
                class("PUT", &target),
                Err(Refusal::MethodNotAllowed("GET, HEAD, POST"))
            );
        }
        assert_eq!(
            class("GET", "/auth/refresh"),
            Err(Refusal::MethodNotAllowed("POST"))
        );
    }

    #[test]
    fn the_decided_method_is_the_upper_cased_one_and_query_overrides_tighten_it() {
        assert_eq!(access("delete", "/items/1"), Access::Deny);
        assert_eq!(access("GET", "/items/1"), Access::Public);
        assert_eq!(access("POST", "/items/1?_method=delete"), Access::Deny);
        assert_eq!(access("POST", "/items/1?_method=PUT"), Access::Public);
    }

    #[test]
    fn connect_and_unsafe_paths_are_refused_before_any_rule() {
        for method in ["CONNECT", "TRACE", "track"] {
            assert_eq!(
                classified(method, "/items/1"),
                Err(Refusal::MethodNotAllowed(PROXIED_METHODS)),
                "{method}"
            );
        }
        assert_eq!(
            classified("GET", "/items/%2e%2e/%2e%2e/x"),
            Err(Refusal::BadPath(PathError::EscapesRoot))
        );
    }
}
