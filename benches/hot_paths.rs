//! The work authgate adds to every proxied request, piece by piece: verifying an access token
//! (signature, claims, revocation lookup among many revoked sessions), matching a realistic rule
//! set, and rewriting the headers.

use std::hint::black_box;
use std::time::Duration;

use authgate::internals::config::{SigningKey, TokenConfig};
use authgate::internals::headers::{OwnedHeaders, remove_hop_by_hop};
use authgate::internals::revocation::{Revocation, RevocationCache, RevocationKind};
use authgate::internals::routes::{Access, RouteRule, RouteTable, normalise_path};
use authgate::internals::token::{Subject, TokenKind, TokenService, unix_now};
use authgate::internals::upstream::Outgoing;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};

fn tokens() -> TokenService {
    TokenService::new(&TokenConfig {
        keys: vec![SigningKey {
            kid: None,
            secret: b"benchmark-secret-0123456789-abcdefghijklmnop".to_vec(),
        }],
        algorithm: jsonwebtoken::Algorithm::HS256,
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(86400),
        issuer: "authgate".into(),
        leeway: Duration::ZERO,
        csrf_claim: false,
    })
}

fn verify(c: &mut Criterion) {
    let service = tokens();
    let now = unix_now();
    let subject = Subject {
        user_id: "6f1c2d9e-8a47-4b5e-9c1d-2f3a4b5c6d7e",
        username: "alice",
        sid: "0b9e8d7c-6a5f-4e3d-2c1b-0a9f8e7d6c5b",
        roles: &[],
    };
    let (token, _) = service.issue(&subject, TokenKind::Access, true, now);
    let revocations = RevocationCache::default();
    for i in 0..100_000u32 {
        revocations.insert(Revocation {
            kind: RevocationKind::Session,
            key: format!("revoked-session-{i}"),
            expires_at: now + 3600,
        });
    }
    c.bench_function("first verification of a token (signature, claims)", |b| {
        // By reference: a service is dropped outside the timing (its token table is 128 KiB).
        b.iter_batched_ref(
            tokens,
            |fresh| {
                fresh
                    .verify_kind(black_box(&token), TokenKind::Access, now)
                    .unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function(
        "verify a token seen before + revocation lookup (100k revoked)",
        |b| {
            b.iter(|| {
                let claims = service
                    .verify_kind(black_box(&token), TokenKind::Access, now)
                    .unwrap();
                assert!(!revocations.is_revoked(&claims, now));
                claims
            })
        },
    );
}

fn routes(c: &mut Criterion) {
    let rule = |p: &str, m: Option<&[&str]>, a| {
        RouteRule::new(p, m.map(|m| m.iter().map(|s| s.to_string()).collect()), a).unwrap()
    };
    let table = RouteTable::new(
        vec![
            rule("/healthcheck", None, Access::Public),
            rule("/static/**", Some(&["GET", "HEAD"]), Access::Public),
            rule("/assets/*.css", None, Access::Public),
            rule("/assets/*.js", None, Access::Public),
            rule("/favicon.ico", None, Access::Public),
            rule("/public/**", Some(&["GET"]), Access::Public),
            rule("/docs/**", None, Access::Public),
            rule("/internal/**", None, Access::Deny),
            rule("/admin/**", None, Access::Deny),
            rule("/metrics", None, Access::Deny),
            rule("/api/v1/users/*/avatar", Some(&["GET"]), Access::Public),
            rule("/api/v1/**", None, Access::Authenticated),
            rule("/api/v2/**", None, Access::Authenticated),
            rule("/ws/**", None, Access::Authenticated),
        ],
        false,
    );
    c.bench_function("normalise + match a 14-rule table", |b| {
        b.iter(|| {
            let path = normalise_path(black_box("/api/v2/orders/1234/items")).unwrap();
            table.decide("GET", &path)
        })
    });
}

fn headers(c: &mut Criterion) {
    let mut template = HeaderMap::new();
    for (name, value) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"),
        ("cookie", "theme=dark; lang=en"),
        ("connection", "keep-alive"),
        ("x-request-id", "7d1f0c2e"),
        ("x-auth-user-id", "forged"),
    ] {
        template.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let owned = OwnedHeaders::new([
        "x-auth-user-id",
        "x-auth-username",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
    ]);
    let extra: [(&str, &[u8]); 5] = [
        ("x-forwarded-host", b"app.example.com"),
        ("x-forwarded-for", b"192.0.2.7"),
        ("x-forwarded-proto", b"http"),
        ("x-auth-user-id", b"0b7c1c1e-4a52-4c3b-9d43-2f5f3c1f8a10"),
        ("x-auth-username", b"alice"),
    ];
    // What `Forwarder::rewrite` does to a request's head: hop-by-hop fields out, then the head
    // encoded for the upstream without the fields authgate owns, with its own added.
    c.bench_function("rewrite and encode a request with 10 header fields", |b| {
        b.iter_batched(
            || {
                let (mut parts, ()) = http::Request::new(()).into_parts();
                parts.headers = template.clone();
                parts
            },
            |mut parts| {
                remove_hop_by_hop(&mut parts.headers);
                Outgoing::new(&parts, "/api/orders?page=2", None, &extra, |name| {
                    owned.contains(name)
                })
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, verify, routes, headers);
criterion_main!(benches);
