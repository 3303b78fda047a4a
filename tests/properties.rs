//! Property tests for authgate's pure functions: path normalisation, route decisions, request
//! classification, token verification and the auth endpoints' JSON bodies.
//!
//! Each property runs a few hundred to a thousand generated cases, so the whole file takes a few
//! seconds. The same invariants are fuzzed for longer by the targets under `fuzz/`.

use std::sync::LazyLock;
use std::time::Duration;

use authgate::Config;
use authgate::internals::classify::Class;
use authgate::internals::config::{SigningKey, TokenConfig};
use authgate::internals::dispatch::{classify, explain};
use authgate::internals::json_fields::string_fields;
use authgate::internals::routes::{Access, normalise_path};
use authgate::internals::token::{Subject, TokenKind, TokenService, unix_now};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::uri::PathAndQuery;
use http::{Method, Uri};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "property-test-secret-0123456789-abcdefghijklmnop";
const KEY_NEW: &[u8] = b"rotation-new-secret-0123456789-abcdefghijklmnop";
const KEY_OLD: &[u8] = b"rotation-old-secret-0123456789-abcdefghijklmnop";
const WRONG_KEY: &[u8] = b"an-attacker-guess-0123456789-abcdefghijklmnopqr";

/// A realistic route table: public, deny and authenticated rules, some limited to methods, with
/// the auth endpoints under `/auth` and the default probes.
fn config_text(case_insensitive: bool) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
auth_prefix = "/auth"
case_insensitive_routes = {case_insensitive}
[upstream]
url = "http://127.0.0.1:9000"
[tokens]
secret = "{SECRET}"
[store]
path = "/nonexistent/authgate-properties.db"
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
"#
    )
}

static CONFIG: LazyLock<Config> =
    LazyLock::new(|| Config::parse(&config_text(false)).expect("the fixture config is valid"));
static CONFIG_CI: LazyLock<Config> =
    LazyLock::new(|| Config::parse(&config_text(true)).expect("the fixture config is valid"));

/// The access the fixture table must give a path by its first segment, whatever follows, or `None`
/// when the first segment alone does not decide.
fn required_access(first_segment: &str, method: &Method, case_insensitive: bool) -> Option<Access> {
    let is = |name: &str| {
        if case_insensitive {
            first_segment.eq_ignore_ascii_case(name)
        } else {
            first_segment == name
        }
    };
    if is("admin") || is("internal") {
        Some(Access::Deny)
    } else if is("private")
        || (is("api")
            && matches!(
                *method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ))
    {
        Some(Access::Authenticated)
    } else {
        None
    }
}

fn token_config(keys: Vec<SigningKey>, leeway: u64) -> TokenConfig {
    TokenConfig {
        keys,
        algorithm: jsonwebtoken::Algorithm::HS256,
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(86_400),
        issuer: "authgate".into(),
        leeway: Duration::from_secs(leeway),
        csrf_claim: false,
    }
}

/// One key, no `kid`: the header is not even read to pick the key.
static SINGLE: LazyLock<TokenService> = LazyLock::new(|| {
    TokenService::new(&token_config(
        vec![SigningKey {
            kid: None,
            secret: SECRET.as_bytes().to_vec(),
        }],
        0,
    ))
});

/// Two keys in rotation: `k-new` signs, the old one (no `kid`) still verifies.
static ROTATING: LazyLock<TokenService> = LazyLock::new(|| {
    TokenService::new(&token_config(
        vec![
            SigningKey {
                kid: Some("k-new".into()),
                secret: KEY_NEW.to_vec(),
            },
            SigningKey {
                kid: None,
                secret: KEY_OLD.to_vec(),
            },
        ],
        5,
    ))
});

fn hs256(key: &[u8], message: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// What the upstream receives for `path_and_query`: built exactly as `proxy::Forwarder::forward`
/// builds it, on the configured upstream base.
fn upstream_uri(config: &Config, path_and_query: &str) -> Result<Uri, String> {
    let mut parts = config.upstream.base.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse::<PathAndQuery>()
            .map_err(|e| format!("{path_and_query:?} is not a path and query: {e}"))?,
    );
    Uri::from_parts(parts).map_err(|e| format!("{path_and_query:?} makes no URI: {e}"))
}

fn describe(result: &Result<Class, authgate::internals::error::ApiError>) -> String {
    match result {
        Ok(class) => format!("{class:?}"),
        Err(e) => format!("error {} {}", e.status().as_u16(), e.message()),
    }
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Single characters that matter to normalisation (separators, dots, percent-encoding of '.', '/',
/// '\\', overlong UTF-8, path parameters), letters of the route names, and a few others.
const ALPHABET: &[char] = &[
    '/', '/', '/', '/', '.', '.', '.', '%', '%', '%', '2', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C',
    'a', 'A', '0', '1', '9', ';', '\\', 'd', 'm', 'i', 'n', 'p', 'u', 'b', 'l', 'r', 'v', 't', 'x',
    'Z', '~', '-', '_', '?', '#', '&', '=', '+', '!', '*', '@', ':', ' ', '\t', 'é',
];

/// Whole segments and fragments an attacker would try, and the fixture's route names.
const SEGMENTS: &[&str] = &[
    "..",
    "..",
    "..",
    ".",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "..;",
    ";",
    "%3b",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%00",
    "%25",
    "%252e",
    "%c0%ae",
    "%c0%af",
    "%e0%80%ae",
    "%ef%bc%8e",
    "%c3%a9",
    "%61dmin",
    "%41DMIN",
    "%70ublic",
    "public",
    "PUBLIC",
    "admin",
    "admin",
    "admin",
    "Admin",
    "ADMIN",
    "internal",
    "private",
    "private",
    "Private",
    "api",
    "assets",
    "x.css",
    "files",
    "raw",
    "auth",
    "login",
    "healthz",
    "readyz",
    "",
];

fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(ALPHABET).prop_map(|c| c.to_string()),
        3 => (any::<bool>(), prop::sample::select(SEGMENTS)).prop_map(|(slash, s)| {
            if slash { format!("/{s}") } else { s.to_string() }
        }),
    ]
}

/// Where a generated path starts: often under a route's prefix, so that dot segments and
/// encodings get their chance to climb from one rule's prefix into another's.
const HEADS: &[&str] = &[
    "/",
    "/",
    "/",
    "/public/",
    "/public/",
    "/public",
    "/api/",
    "/assets/",
    "/files/a/",
    "/admin",
    "/private/",
    "//",
    "/./",
    "/auth/",
    "",
];

/// A request path: mostly rooted, a head, then a run of characters and segments.
fn request_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(HEADS),
        prop::collection::vec(path_piece(), 0..16),
    )
        .prop_map(|(head, pieces)| {
            let mut path = head.to_string();
            path.extend(pieces);
            path
        })
}

/// A request target: origin-form mostly, sometimes absolute-form, with an optional query.
fn request_target() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        request_path(),
        prop::option::weighted(0.3, "[a-z0-9=&/.%;?#]{0,12}"),
    )
        .prop_map(|(absolute, path, query)| {
            let mut target = if absolute {
                "http://gate.example".to_string()
            } else {
                String::new()
            };
            target.push_str(&path);
            if let Some(q) = query {
                target.push('?');
                target.push_str(&q);
            }
            target
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        6 => prop::sample::select(vec![
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ]),
        // Extension methods, including a lower-case "get" that is not GET.
        1 => "[A-Za-z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).expect("a token")),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "sub", "username", "password", "jti", "sid", "type", "fresh", "iat", "nbf", "exp",
            "iss", "alg", "kid", "typ", "crit", "jwk",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A time claim: plausible (around now), extreme, or of the wrong type.
fn time_claim() -> impl Strategy<Value = Value> {
    let now = unix_now() as i64;
    prop_oneof![
        4 => (-4000i64..4000).prop_map(move |d| json!(now + d)),
        1 => prop::sample::select(vec![
            json!(0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(1e300),
            json!(1.5),
            json!("9999999999"),
        ]),
        1 => json_value(),
    ]
}

const CLAIM_NAMES: &[&str] = &[
    "sub", "username", "jti", "sid", "type", "fresh", "iat", "nbf", "exp", "iss",
];

/// A claims object: a valid Flask-JWT-Extended claim set (issued up to 10 minutes ago, not yet
/// expired), then up to three mutations, each removing a claim or setting one (or another key)
/// to a plausible, extreme or ill-typed value.
fn claims_value() -> impl Strategy<Value = Value> {
    let now = unix_now();
    let mutation = (
        prop_oneof![
            3 => prop::sample::select(CLAIM_NAMES).prop_map(str::to_string),
            1 => json_key(),
        ],
        prop::option::weighted(
            0.8,
            prop_oneof![
                time_claim(),
                json_value(),
                prop::sample::select(vec![
                    json!("access"),
                    json!("refresh"),
                    json!("admin"),
                    json!("someone-else"),
                    json!(""),
                    json!(true),
                ]),
            ],
        ),
    );
    (
        prop::array::uniform4("[a-z0-9-]{0,8}"),
        any::<bool>(),
        any::<bool>(),
        0u64..600,
        1u64..4000,
        prop::collection::vec(mutation, 0..3),
    )
        .prop_map(
            move |([sub, username, jti, sid], refresh, fresh, age, ttl, mutations)| {
                let iat = now - age;
                let mut claims = json!({
                    "sub": sub, "username": username, "jti": jti, "sid": sid,
                    "type": if refresh { "refresh" } else { "access" },
                    "fresh": fresh, "iat": iat, "nbf": iat, "exp": iat + ttl, "iss": "authgate",
                });
                let map = claims.as_object_mut().expect("an object");
                for (key, value) in mutations {
                    match value {
                        Some(v) => map.insert(key, v),
                        None => map.remove(&key),
                    };
                }
                claims
            },
        )
}

/// A JOSE header: the algorithm (ours, another HMAC, an asymmetric one, "none"), maybe a `kid`,
/// maybe extra members.
fn header_value() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        6 => Just(json!("HS256")),
        3 => prop::sample::select(vec![
            "HS384", "HS512", "none", "None", "NONE", "RS256", "ES256", "EdDSA", "hs256", "",
        ])
        .prop_map(|a| json!(a)),
        1 => json_value(),
    ];
    let kid = prop_oneof![
        4 => prop::sample::select(vec!["k-new", "k-old", "", "../../etc/passwd", "http://evil.example/key"])
            .prop_map(|k| json!(k)),
        1 => Just(Value::Null),
        1 => json_value(),
    ];
    (
        prop::option::weighted(0.95, alg),
        prop::option::weighted(0.5, kid),
        prop::option::weighted(0.7, Just(json!("JWT"))),
        prop::collection::vec((json_key(), json_value()), 0..2),
    )
        .prop_map(|(alg, kid, typ, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [("alg", alg), ("kid", kid), ("typ", typ)] {
                if let Some(v) = v {
                    map.insert(k.to_string(), v);
                }
            }
            Value::Object(map)
        })
}

/// How a generated token is signed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signature {
    /// HMAC-SHA256 over the signing input with this key.
    Hmac(&'static [u8]),
    /// Random bytes, base64url-encoded.
    Random,
    /// Nothing after the last dot (what "alg": "none" tokens carry).
    Empty,
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        3 => Just(Signature::Hmac(SECRET.as_bytes())),
        2 => Just(Signature::Hmac(KEY_NEW)),
        2 => Just(Signature::Hmac(KEY_OLD)),
        1 => Just(Signature::Hmac(WRONG_KEY)),
        1 => Just(Signature::Random),
        1 => Just(Signature::Empty),
    ]
}

/// A token built as three base64url segments: header and payload JSON (or raw bytes), signed as
/// `Signature` says.
#[derive(Debug, Clone)]
struct BuiltToken {
    header: Option<Value>,
    signature: Signature,
    token: String,
}

fn built_token() -> impl Strategy<Value = BuiltToken> {
    let header = prop_oneof![
        8 => header_value().prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    let payload = prop_oneof![
        6 => claims_value().prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => any::<Vec<u8>>(),
    ];
    (
        header,
        any::<Vec<u8>>(),
        payload,
        signature(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(header, raw_header, payload, signature, random)| {
            let header_bytes = match &header {
                Some(h) => h.to_string().into_bytes(),
                None => raw_header,
            };
            let signing_input = format!("{}.{}", B64.encode(header_bytes), B64.encode(payload));
            let sig = match signature {
                Signature::Hmac(key) => B64.encode(hs256(key, &signing_input)),
                Signature::Random => B64.encode(random),
                Signature::Empty => String::new(),
            };
            BuiltToken {
                header,
                signature,
                token: format!("{signing_input}.{sig}"),
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Path normalisation
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(1000))]

    /// Normalisation is idempotent: whenever `normalise_path(p)` is `Ok(n)`, `normalise_path(n)`
    /// is `Ok(n)` again. So the upstream, handed `n`, cannot be talked into reading another path
    /// by a second round of decoding and dot-segment removal of the kind authgate does.
    #[test]
    fn normalisation_is_idempotent(path in prop_oneof![3 => request_path(), 1 => any::<String>()]) {
        if let Ok(once) = normalise_path(&path) {
            prop_assert_eq!(normalise_path(&once), Ok(once.clone()), "input {:?}", path);
        }
    }

    /// A normalised path is in the shape the route matcher assumes: rooted, no empty, "." or ".."
    /// segment (but a trailing slash), no byte outside printable ASCII, no backslash or ';', and
    /// no percent-encoding of an unreserved character.
    #[test]
    fn normalised_paths_have_no_dot_segments_or_unsafe_bytes(path in request_path()) {
        if let Ok(n) = normalise_path(&path) {
            prop_assert!(n.starts_with('/'), "{:?} -> {:?}", path, n);
            let segments: Vec<&str> = n[1..].split('/').collect();
            for (i, seg) in segments.iter().enumerate() {
                let last = i + 1 == segments.len();
                prop_assert!(last || !seg.is_empty(), "{:?} -> {:?}: empty segment", path, n);
                prop_assert!(*seg != "." && *seg != "..", "{:?} -> {:?}: dot segment", path, n);
            }
            prop_assert!(
                n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b';'),
                "{:?} -> {:?}: unsafe byte", path, n
            );
            for escape in n.split('%').skip(1) {
                let hex = u8::from_str_radix(&escape[..2], 16).expect("well-formed escape");
                prop_assert!(
                    !(hex.is_ascii_alphanumeric()
                        || hex.is_ascii_control()
                        || b"-._~/\\".contains(&hex)),
                    "{:?} -> {:?}: %{} should have been decoded or refused", path, n, &escape[..2]
                );
            }
        }
    }
}

/// Ways of writing the same path differently, none of which may change its normal form.
#[derive(Debug, Clone)]
enum Disguise {
    /// Percent-encode the unreserved characters (not part of an escape) picked by the mask, with
    /// lower- or upper-case hex.
    Encode { mask: Vec<bool>, upper: bool },
    /// Insert `./` after the n-th slash.
    DotSegment(prop::sample::Index),
    /// Insert `zz/../` after the n-th slash.
    UpAndBack(prop::sample::Index),
    /// Double the n-th slash.
    DoubleSlash(prop::sample::Index),
}

fn disguise() -> impl Strategy<Value = Disguise> {
    prop_oneof![
        (prop::collection::vec(any::<bool>(), 0..64), any::<bool>())
            .prop_map(|(mask, upper)| Disguise::Encode { mask, upper }),
        any::<prop::sample::Index>().prop_map(Disguise::DotSegment),
        any::<prop::sample::Index>().prop_map(Disguise::UpAndBack),
        any::<prop::sample::Index>().prop_map(Disguise::DoubleSlash),
    ]
}

fn apply(disguise: &Disguise, path: &str) -> String {
    let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    let after_slash = |index: &prop::sample::Index, insert: &str, keep_slash: bool| {
        if slashes.is_empty() {
            return path.to_string();
        }
        let at = slashes[index.index(slashes.len())];
        let split = if keep_slash { at + 1 } else { at };
        format!("{}{insert}{}", &path[..split], &path[split..])
    };
    match disguise {
        Disguise::Encode { mask, upper } => {
            let mut out = String::with_capacity(path.len() * 3);
            let mut escape_left = 0;
            for (i, c) in path.chars().enumerate() {
                let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
                if escape_left > 0 {
                    escape_left -= 1;
                    out.push(c);
                } else if c == '%' {
                    escape_left = 2;
                    out.push(c);
                } else if unreserved && mask.get(i).copied().unwrap_or(false) {
                    if *upper {
                        out.push_str(&format!("%{:02X}", c as u32));
                    } else {
                        out.push_str(&format!("%{:02x}", c as u32));
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        Disguise::DotSegment(n) => after_slash(n, "./", true),
        Disguise::UpAndBack(n) => after_slash(n, "zz/../", true),
        Disguise::DoubleSlash(n) => after_slash(n, "/", false),
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Writing a path differently (percent-encoding unreserved characters, adding `./`, `zz/../`
    /// or a second slash) changes neither its normal form nor the error it is refused with. Plain
    /// paths take `normalise_path`'s fast path and their disguises the full one, so this also
    /// checks that the two agree.
    #[test]
    fn equivalent_spellings_normalise_alike(path in request_path(), disguise in disguise()) {
        let disguised = apply(&disguise, &path);
        prop_assert_eq!(
            normalise_path(&disguised),
            normalise_path(&path),
            "{:?} disguised as {:?}",
            path,
            disguised
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Classification: the decision and the forwarded path agree
// ---------------------------------------------------------------------------------------------

fn check_agreement(
    config: &Config,
    case_insensitive: bool,
    method: &Method,
    target: &str,
) -> Result<(), TestCaseError> {
    let Ok(uri) = target.parse::<Uri>() else {
        // hyper refuses such a target before authgate sees it.
        return Ok(());
    };
    let first = classify(config, method, &uri);
    let Ok(Class::Proxy {
        path_and_query,
        decision,
    }) = &first
    else {
        return Ok(());
    };
    // The forwarded path is the normalised path, and the query goes along as sent.
    let normalised = normalise_path(uri.path());
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query.as_str(), None),
    };
    prop_assert_eq!(
        Ok(path.to_string()),
        normalised.clone(),
        "target {:?}",
        target
    );
    prop_assert_eq!(query, uri.query(), "target {:?}", target);

    // What the upstream receives, classified again, meets the same rule and the same path.
    let upstream = upstream_uri(config, path_and_query)
        .map_err(|e| TestCaseError::fail(format!("target {target:?}: {e}")))?;
    prop_assert_eq!(
        upstream.path_and_query().map(PathAndQuery::as_str),
        Some(path_and_query.as_str()),
        "target {:?}",
        target
    );
    let again = classify(config, method, &upstream);
    let expected: Result<Class, authgate::internals::error::ApiError> = Ok(Class::Proxy {
        path_and_query: path_and_query.clone(),
        decision: decision.clone(),
    });
    prop_assert_eq!(
        describe(&again),
        describe(&expected),
        "{} {:?}: authgate decided on {:?} but the upstream receives {:?}",
        method,
        target,
        normalised,
        upstream
    );

    // A path under a denied or authenticated prefix is never public.
    let normalised = normalised.expect("classified, so normalised");
    let first_segment = normalised[1..].split('/').next().unwrap_or_default();
    if let Some(required) = required_access(first_segment, method, case_insensitive) {
        prop_assert_ne!(
            decision.access,
            Access::Public,
            "{} {:?} (normalised {:?}) must not be public",
            method,
            target,
            normalised
        );
        prop_assert_eq!(
            decision.access,
            required,
            "{} {:?} (normalised {:?})",
            method,
            target,
            normalised
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    /// For any request target, when `classify` forwards it as `Proxy { path_and_query, decision }`:
    /// the forwarded path is `normalise_path` of the target's path with the query unchanged;
    /// classifying what the upstream receives gives the same decision and the same path (the rule
    /// authgate applied is the rule for the path the upstream serves); and a target whose
    /// normalised path lies under a denied (`/admin`, `/internal`) or authenticated (`/private`,
    /// writes to `/api`) prefix is never public. Case-sensitive route table.
    #[test]
    fn decision_and_forwarded_path_agree(method in method(), target in request_target()) {
        check_agreement(&CONFIG, false, &method, &target)?;
    }

    /// The same agreement with `case_insensitive_routes = true`, where `/ADMIN` is denied too.
    #[test]
    fn decision_and_forwarded_path_agree_case_insensitive(
        method in method(),
        target in request_target(),
    ) {
        check_agreement(&CONFIG_CI, true, &method, &target)?;
    }
}

// ---------------------------------------------------------------------------------------------
// No input panics
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(1000))]

    /// `normalise_path` returns (Ok or Err) on any string, including lossily decoded bytes.
    #[test]
    fn normalise_path_never_panics(
        text in any::<String>(),
        bytes in any::<Vec<u8>>(),
        path in request_path(),
    ) {
        let _ = normalise_path(&text);
        let _ = normalise_path(&String::from_utf8_lossy(&bytes));
        let _ = normalise_path(&format!("/{}", String::from_utf8_lossy(&bytes)));
        let _ = normalise_path(&path);
    }

    /// Any string that `http::Uri` accepts as a target, with any method, is classified (and
    /// explained) without a panic; so is any string handed to `authgate explain`.
    #[test]
    fn classify_and_explain_never_panic(
        method in method(),
        target in prop_oneof![any::<String>(), request_target(), "[ -~]{0,40}"],
        raw_method in "\\PC{0,10}",
    ) {
        if let Ok(uri) = target.parse::<Uri>() {
            let _ = classify(&CONFIG, &method, &uri);
            let _ = classify(&CONFIG_CI, &method, &uri);
        }
        let _ = explain(&CONFIG, method.as_str(), &target);
        let _ = explain(&CONFIG, &raw_method, &target);
    }

    /// `string_fields` answers (Ok or a 400) on arbitrary bytes and on arbitrary JSON.
    #[test]
    fn string_fields_never_panics(bytes in any::<Vec<u8>>(), value in json_value()) {
        let _ = string_fields(&bytes, ["username", "password"]);
        let text = value.to_string();
        let _ = string_fields(text.as_bytes(), ["username", "password"]);
        let _ = string_fields(text.as_bytes(), ["old_password", "new_password"]);
        let _ = string_fields(text.as_bytes(), ["refresh_token"]);
    }

    /// `TokenService::verify` refuses, without a panic, any string as a token: with one key and
    /// with rotating keys (where the header is parsed to find the `kid`), at any `now`.
    #[test]
    fn verify_never_panics_on_strings(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_=+/-]{0,30}(\\.[A-Za-z0-9_=+/-]{0,30}){0,4}",
        ],
        now in prop_oneof![Just(unix_now()), any::<u64>()],
    ) {
        prop_assert!(SINGLE.verify(&token, now).is_err(), "{:?}", token);
        prop_assert!(ROTATING.verify(&token, now).is_err(), "{:?}", token);
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Deeply nested JSON (past serde_json's recursion limit) is a 400, not a stack overflow.
    #[test]
    fn string_fields_survives_deep_nesting(
        depth in 1usize..5000,
        opener in prop::sample::select(vec!["[", "{\"a\":", "{\"username\":"]),
        close in any::<bool>(),
    ) {
        let mut body = opener.repeat(depth);
        if close {
            body.push('1');
            let closer = if opener == "[" { "]" } else { "}" };
            body.push_str(&closer.repeat(depth));
        }
        let result = string_fields(body.as_bytes(), ["username", "password"]);
        prop_assert!(result.is_err());
    }

    /// Any two strings (any Unicode, escapes, NULs) sent as `username` and `password` come back
    /// exactly, whatever other members the object has.
    #[test]
    fn string_fields_round_trips_strings(
        username in any::<String>(),
        password in any::<String>(),
        extra in prop::collection::vec((json_key(), json_value()), 0..4),
    ) {
        let mut object: Map<String, Value> = extra.into_iter().collect();
        object.insert("username".into(), json!(username));
        object.insert("password".into(), json!(password));
        let body = Value::Object(object).to_string();
        let got = string_fields(body.as_bytes(), ["username", "password"]);
        prop_assert_eq!(got.ok(), Some([username, password]));
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// The `kid` a header names, as jsonwebtoken reads it: `Some(None)` for none (absent or null),
/// `Some(Some(kid))` for a string, `None` when the header would not parse as a JOSE header.
fn header_kid(header: &Value) -> Option<Option<&str>> {
    match header.get("kid") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(kid)) => Some(Some(kid)),
        Some(_) => None,
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Tokens built from three base64url segments of arbitrary (and claims-shaped) JSON never
    /// panic `verify`, and only a token whose header says HS256 and whose signature is an HMAC
    /// with the key that header selects is ever accepted; an accepted token's claims carry our
    /// issuer and an `exp` after `now` (less leeway).
    #[test]
    fn verify_accepts_only_tokens_signed_with_a_configured_key(built in built_token()) {
        let now = unix_now();
        let alg_is_ours = built
            .header
            .as_ref()
            .and_then(|h| h.get("alg"))
            .and_then(Value::as_str)
            == Some("HS256");

        if let Ok(claims) = SINGLE.verify(&built.token, now) {
            prop_assert!(alg_is_ours, "accepted a header without alg HS256: {:?}", built);
            prop_assert_eq!(built.signature, Signature::Hmac(SECRET.as_bytes()), "{:?}", built);
            prop_assert_eq!(claims.iss.as_str(), "authgate");
            prop_assert!(claims.exp > now, "{:?}", claims);
        }

        if let Ok(claims) = ROTATING.verify(&built.token, now) {
            prop_assert!(alg_is_ours, "accepted a header without alg HS256: {:?}", built);
            let kid = built.header.as_ref().and_then(header_kid);
            let expected_key: &[u8] = match kid {
                Some(Some("k-new")) => KEY_NEW,
                Some(None) => KEY_OLD,
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "accepted a token whose kid names no configured key: {built:?}"
                    )));
                }
            };
            prop_assert_eq!(built.signature, Signature::Hmac(expected_key), "{:?}", built);
            prop_assert_eq!(claims.iss.as_str(), "authgate");
            prop_assert!(claims.exp.saturating_add(5) > now, "{:?}", claims);
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Whatever the subject's strings, an issued token verifies to exactly the claims issued,
    /// with one key and with rotating keys.
    #[test]
    fn issued_tokens_verify_to_their_claims(
        user_id in any::<String>(),
        username in any::<String>(),
        sid in any::<String>(),
        refresh in any::<bool>(),
        fresh in any::<bool>(),
    ) {
        let now = unix_now();
        let kind = if refresh { TokenKind::Refresh } else { TokenKind::Access };
        let subject = Subject { user_id: &user_id, username: &username, sid: &sid, roles: &[] };
        for service in [&*SINGLE, &*ROTATING] {
            let (token, claims) = service.issue(&subject, kind, fresh, now);
            prop_assert_eq!(service.verify(&token, now).map(|c| (*c).clone()), Ok(claims.clone()));
            prop_assert_eq!(&claims.sub, &user_id);
            prop_assert_eq!(&claims.username, &username);
            prop_assert_eq!(&claims.sid, &sid);
            prop_assert_eq!(claims.fresh, fresh && kind == TokenKind::Access);
        }
        // A token from one service's key is not accepted by the other.
        let (token, _) = SINGLE.issue(&subject, kind, fresh, now);
        prop_assert!(ROTATING.verify(&token, now).is_err());
    }

    /// Changing any one character of an issued token (to any base64url character or a dot) makes
    /// it fail verification: no malleable header, payload or signature encoding.
    #[test]
    fn any_one_character_change_is_refused(
        index in any::<prop::sample::Index>(),
        replacement in prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/"
                .chars()
                .collect::<Vec<_>>(),
        ),
        rotating in any::<bool>(),
    ) {
        let now = unix_now();
        let service = if rotating { &*ROTATING } else { &*SINGLE };
        let subject = Subject { user_id: "u-1", username: "alice", sid: "s-1", roles: &[] };
        let (token, _) = service.issue(&subject, TokenKind::Access, true, now);
        let mut chars: Vec<char> = token.chars().collect();
        let i = index.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let tampered: String = chars.into_iter().collect();
        prop_assert!(
            service.verify(&tampered, now).is_err(),
            "position {} of {:?} changed to {:?} still verifies", i, token, replacement
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Known bypass attempts, pinned as plain examples
// ---------------------------------------------------------------------------------------------

/// Classic bypass targets: each is refused (400) or meets the rule of the path it really names.
#[test]
fn known_bypass_targets_are_refused_or_meet_the_real_rule() {
    let cases: &[(&str, Option<Access>)] = &[
        ("/public/../admin", Some(Access::Deny)),
        ("/public/%2e%2e/admin", Some(Access::Deny)),
        ("/public/%2E%2e/admin", Some(Access::Deny)),
        ("/public/.%2e/admin", Some(Access::Deny)),
        ("//admin", Some(Access::Deny)),
        ("/./admin", Some(Access::Deny)),
        ("/%61dmin/x", Some(Access::Deny)),
        ("/public/../private/x", Some(Access::Authenticated)),
        ("/public/..;/admin", None),
        ("/public/..%2fadmin", None),
        ("/public/..%5cadmin", None),
        ("/public/..\\admin", None),
        ("/%c0%ae%c0%ae/admin", None),
        ("/public/%00/../admin", None),
        ("/..", None),
    ];
    for &(target, want) in cases {
        let uri: Uri = match target.parse() {
            Ok(uri) => uri,
            Err(_) => {
                assert_eq!(want, None, "{target} is refused by the URI parser");
                continue;
            }
        };
        let got = classify(&CONFIG, &Method::GET, &uri);
        match (want, &got) {
            (Some(access), Ok(Class::Proxy { decision, .. })) => {
                assert_eq!(decision.access, access, "{target}")
            }
            (None, Err(e)) => assert_eq!(e.status().as_u16(), 400, "{target}"),
            _ => panic!("{target}: wanted {want:?}, got {}", describe(&got)),
        }
    }
}
