//! Configuration: the TOML file as written (`RawConfig`, unknown keys rejected) and the validated
//! `Config` the gate runs on. Validation collects every problem so `authgate check` can list them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::classify::Layout;
pub use crate::core::cookies::{CookieConfig, SameSite, TokenLocation};
use crate::core::routes::{Access, RouteRule, RouteTable};

mod keys;
use keys::load_keys;

pub use crate::core::assertion::AssertionConfig;
pub use crate::core::token::{SigningKey, TokenConfig};

/// The file as written. Durations and enums stay text here so validation can report all problems.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub tokens: RawTokens,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub passwords: RawPasswords,
    #[serde(default)]
    pub login_limits: RawLoginLimits,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub cookies: RawCookies,
    #[serde(default)]
    pub accounts: RawAccounts,
    #[serde(default)]
    pub login_page: RawLoginPage,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub auth_prefix: String,
    pub case_insensitive_routes: bool,
    pub header_read_timeout: String,
    /// How long a client may take to send an auth endpoint's whole body.
    pub body_read_timeout: String,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Worker threads, each with its own event loop and upstream pool (0: one per CPU).
    pub workers: usize,
    /// All request headers together, in bytes; more gets 431.
    pub max_header_bytes: usize,
    pub max_authorization_header: usize,
    pub max_auth_body: usize,
    pub health_path: String,
    pub ready_path: String,
    pub shutdown_grace: String,
    /// Proxies in front of authgate (an ingress, a load balancer), as addresses or CIDR networks,
    /// whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            auth_prefix: String::new(),
            case_insensitive_routes: false,
            header_read_timeout: "10s".into(),
            body_read_timeout: "10s".into(),
            max_connections: 10_000,
            workers: 0,
            max_header_bytes: 32 * 1024,
            max_authorization_header: 8 * 1024,
            max_auth_body: 64 * 1024,
            health_path: "/healthz".into(),
            ready_path: "/readyz".into(),
            shutdown_grace: "30s".into(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default = "default_upstream_timeout")]
    pub timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_pool_idle")]
    pub pool_idle_timeout: String,
}

fn default_upstream_timeout() -> String {
    "30s".into()
}
fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_pool_idle() -> String {
    "90s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    /// For an asymmetric `algorithm`: the private key, PKCS#8 PEM.
    pub private_key_file: Option<PathBuf>,
    /// Several signing keys, for rotation: the first signs new tokens, all verify.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(default = "default_access_ttl")]
    pub access_ttl: String,
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_leeway")]
    pub leeway: String,
    /// Where tokens are read, in order (Flask-JWT-Extended's `JWT_TOKEN_LOCATION`).
    #[serde(default = "default_location")]
    pub location: Vec<String>,
    /// How long a just-rotated refresh token still refreshes its session (browsers' tabs race).
    #[serde(default = "default_refresh_reuse_interval")]
    pub refresh_reuse_interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Written into the header of tokens this key signs; at most one key may have none (it then
    /// verifies tokens that carry no `kid`, such as those signed before keys were listed).
    pub kid: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub private_key_file: Option<PathBuf>,
}

fn default_algorithm() -> String {
    "HS256".into()
}
fn default_access_ttl() -> String {
    "15m".into()
}
fn default_refresh_ttl() -> String {
    "30d".into()
}
fn default_issuer() -> String {
    "authgate".into()
}
fn default_leeway() -> String {
    "0s".into()
}
fn default_location() -> Vec<String> {
    vec!["headers".into()]
}
fn default_refresh_reuse_interval() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCookies {
    pub secure: bool,
    /// "Strict", "Lax" or "None".
    pub same_site: String,
    pub domain: Option<String>,
    pub csrf_protect: bool,
}

impl Default for RawCookies {
    fn default() -> Self {
        RawCookies {
            secure: true,
            same_site: "Lax".into(),
            domain: None,
            csrf_protect: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccounts {
    pub allow_registration: bool,
}

impl Default for RawAccounts {
    fn default() -> Self {
        RawAccounts {
            allow_registration: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLoginPage {
    /// The page's `<title>` and heading.
    pub title: String,
    /// The name shown above the form.
    pub product: String,
    /// An HTML file to use instead of the built-in page: `{{title}}`, `{{product}}` and
    /// `{{content}}` (the form) are filled in.
    pub template: Option<PathBuf>,
}

impl Default for RawLoginPage {
    fn default() -> Self {
        RawLoginPage {
            title: "Sign in".into(),
            product: "authgate".into(),
            template: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    /// Embedded SQLite file (the default when neither url nor url_env is given).
    pub path: Option<PathBuf>,
    /// `postgres://…`, inline or from an environment variable.
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub max_connections: u32,
    pub connect_timeout: String,
    /// How often revocations written by other replicas are re-read, in case a notification was missed.
    pub catch_up_interval: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: None,
            url: None,
            url_env: None,
            max_connections: 10,
            connect_timeout: "5s".into(),
            catch_up_interval: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLoginLimits {
    /// Failed logins allowed per username per window (0: off).
    pub per_user: u32,
    /// Login attempts allowed per client address per window (0: off).
    pub per_address: u32,
    pub window: String,
}

impl Default for RawLoginLimits {
    fn default() -> Self {
        RawLoginLimits {
            per_user: 5,
            per_address: 60,
            window: "1m".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Where Prometheus scrapes `/metrics`; no metrics listener when absent.
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// "human" or "json".
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "human".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentity {
    pub user_id_header: String,
    pub username_header: String,
    pub roles_header: String,
    /// Where the signed identity goes; assertions are off without it.
    pub assertion_header: Option<String>,
    pub assertion_audience: Option<String>,
    pub assertion_algorithm: String,
    pub assertion_ttl: String,
    pub assertion_keys: Vec<RawKey>,
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            user_id_header: "X-Auth-User-Id".into(),
            username_header: "X-Auth-Username".into(),
            roles_header: "X-Auth-Roles".into(),
            assertion_header: None,
            assertion_audience: None,
            assertion_algorithm: "EdDSA".into(),
            assertion_ttl: "60s".into(),
            assertion_keys: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPasswords {
    /// argon2id memory in KiB (OWASP: 19 MiB).
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes may run at once; more wait their turn.
    pub max_concurrent_hashes: usize,
    /// How many may wait; beyond that a login or registration is answered 503 at once.
    pub max_waiting_hashes: usize,
    /// How long one may wait for its turn before it is answered 503.
    pub max_wait: String,
}

impl Default for RawPasswords {
    fn default() -> Self {
        RawPasswords {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent_hashes: 0,
            max_waiting_hashes: 256,
            max_wait: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    pub methods: Option<Vec<String>>,
    /// Required unless `roles` is given, which makes a rule `authenticated`.
    pub access: Option<String>,
    pub roles: Option<Vec<String>>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Prefix of the auth endpoints, "" or "/something" without a trailing slash.
    pub auth_prefix: String,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub workers: usize,
    pub max_header_bytes: usize,
    pub max_authorization_header: usize,
    pub max_auth_body: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub upstream: UpstreamConfig,
    pub tokens: TokenConfig,
    pub store: StoreConfig,
    pub catch_up_interval: Duration,
    pub health_path: String,
    pub ready_path: String,
    pub shutdown_grace: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub identity: IdentityConfig,
    pub passwords: PasswordConfig,
    pub login_limits: LoginLimits,
    pub routes: RouteTable,
    /// Where tokens are read, in order: the first place that holds one is used.
    pub token_locations: Vec<TokenLocation>,
    pub refresh_reuse_interval: Duration,
    pub cookies: CookieConfig,
    pub allow_registration: bool,
    pub login_page: LoginPage,
    /// What the configuration allows but should not (a key file every user may read): logged
    /// when `run` starts, and printed by `authgate check`.
    pub warnings: Vec<String>,
}

/// The sign-in pages' text and frame.
#[derive(Debug, Clone)]
pub struct LoginPage {
    pub title: String,
    pub product: String,
    /// The HTML frame, with `{{title}}`, `{{product}}` and `{{content}}` to fill in; `None`: the
    /// built-in one.
    pub template: Option<String>,
}

/// Where users, sessions and revocations live.
#[derive(Clone)]
pub enum StoreConfig {
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        url: String,
        max_connections: u32,
        connect_timeout: Duration,
    },
}

impl std::fmt::Debug for StoreConfig {
    /// Never prints the database URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StoreConfig::Postgres {
                max_connections, ..
            } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("max_connections", max_connections)
                .finish(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// scheme://host:port of the app; requests go here and nowhere else.
    pub base: http::Uri,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_id_header: http::HeaderName,
    pub username_header: http::HeaderName,
    /// The user's roles, comma-separated; not sent when they have none.
    pub roles_header: http::HeaderName,
    /// The signed identity, when `assertion_header` is set.
    pub assertion: Option<AssertionConfig>,
}

#[derive(Debug, Clone)]
pub struct PasswordConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent_hashes: usize,
    pub max_waiting_hashes: usize,
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

/// Every problem found in a configuration, one line each.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// What classifying a request needs of this configuration.
    pub fn layout(&self) -> Layout<'_> {
        Layout {
            health_path: &self.health_path,
            ready_path: &self.ready_path,
            auth_prefix: &self.auth_prefix,
            routes: &self.routes,
            pages: self.cookies_enabled(),
            jwks: self.publishes_keys(),
        }
    }

    /// Whether authgate has public keys to publish (`{auth_prefix}/.well-known/jwks.json`):
    /// asymmetric tokens, or assertions.
    pub fn publishes_keys(&self) -> bool {
        crate::core::keys::is_asymmetric(self.tokens.algorithm) || self.identity.assertion.is_some()
    }

    /// Whether tokens may come in cookies: then browsers get the sign-in pages and cookies.
    pub fn cookies_enabled(&self) -> bool {
        self.token_locations.contains(&TokenLocation::Cookies)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text. Relative paths in it (`secret_file`, `store.path`) are
    /// relative to the working directory, like every path given on the command line.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))?;
        Config::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let warnings = keys::exposed_key_files(&raw.tokens, &raw.identity.assertion_keys);
        let server = raw.server.validate(&mut problems);
        let upstream = raw.upstream.validate(&mut problems);
        let TokensSection {
            mut tokens,
            locations: token_locations,
            refresh_reuse_interval,
        } = raw.tokens.validate(&mut problems);
        let cookies = raw.cookies.validate(&mut problems);
        let login_page = raw.login_page.validate(&mut problems);
        tokens.csrf_claim =
            token_locations.contains(&TokenLocation::Cookies) && cookies.csrf_protect;
        let (store, catch_up_interval) = raw.store.validate(&mut problems);
        let identity = raw.identity.validate(&mut problems);
        if let Some(assertion) = &identity.assertion {
            if let Err(p) = keys::keep_apart(&tokens, assertion) {
                problems.push(p);
            }
        }
        let passwords = raw.passwords.validate(&mut problems);
        let login_limits = raw.login_limits.validate(&mut problems);
        let metrics_listen = raw.metrics.validate(&mut problems);
        let log_format = raw.log.validate(&mut problems);
        let mut rules = Vec::new();
        for (i, route) in raw.routes.iter().enumerate() {
            match route_rule(route) {
                Ok(rule) => rules.push(rule),
                Err(p) => problems.push(format!("routes[{i}] (path {:?}): {p}", route.path)),
            }
        }
        if !problems.0.is_empty() {
            return Err(ConfigError(problems.0));
        }
        Ok(Config {
            listen: server.listen,
            auth_prefix: server.auth_prefix,
            header_read_timeout: server.header_read_timeout,
            body_read_timeout: server.body_read_timeout,
            max_connections: server.max_connections,
            workers: server.workers,
            max_header_bytes: server.max_header_bytes,
            max_authorization_header: server.max_authorization_header,
            max_auth_body: server.max_auth_body,
            trusted_proxies: server.trusted_proxies,
            upstream,
            tokens,
            store,
            catch_up_interval,
            health_path: server.health_path,
            ready_path: server.ready_path,
            shutdown_grace: server.shutdown_grace,
            metrics_listen,
            log_format,
            identity,
            passwords,
            login_limits,
            routes: RouteTable::new(rules, server.case_insensitive_routes),
            token_locations,
            refresh_reuse_interval,
            cookies,
            allow_registration: raw.accounts.allow_registration,
            login_page,
            warnings,
        })
    }
}

/// Every problem found so far, in every section: all reported at once.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// `text` as a duration; `Duration::ZERO` (and a problem) when it is not one.
    fn duration(&mut self, key: &str, text: &str) -> Duration {
        humantime::parse_duration(text).unwrap_or_else(|e| {
            self.push(format!(
                "{key} = {text:?}: {e} (write durations like \"15m\", \"2s\", \"30d\")"
            ));
            Duration::ZERO
        })
    }

    /// A duration that must be at least a second: timeouts and lifetimes shorter than that are
    /// typing mistakes (`"15"` for `"15m"`), not settings.
    fn at_least_a_second(&mut self, key: &str, text: &str) -> Duration {
        let parsed = humantime::parse_duration(text);
        let duration = self.duration(key, text);
        if parsed.is_ok() && duration < Duration::from_secs(1) {
            self.push(format!("{key} must be at least 1s"));
        }
        duration
    }

    /// `path` as a probe's path: plain and normalised.
    fn plain_path(&mut self, key: &str, path: &str) -> String {
        if !path.starts_with('/')
            || crate::core::routes::normalise_path(path).as_deref() != Ok(path)
        {
            self.push(format!(
                "server.{key} = {path:?} must be a plain path like \"/healthz\""
            ));
        }
        path.to_string()
    }
}

/// `[server]`, validated.
struct ServerSection {
    listen: SocketAddr,
    auth_prefix: String,
    case_insensitive_routes: bool,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    max_connections: usize,
    workers: usize,
    max_header_bytes: usize,
    max_authorization_header: usize,
    max_auth_body: usize,
    health_path: String,
    ready_path: String,
    shutdown_grace: Duration,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl RawServer {
    fn validate(self, problems: &mut Problems) -> ServerSection {
        let listen = self.listen.parse().unwrap_or_else(|_| {
            problems.push(format!(
                "server.listen = {:?} is not an address like \"127.0.0.1:8080\"",
                self.listen
            ));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let auth_prefix = self.auth_prefix.trim_end_matches('/').to_string();
        if !auth_prefix.is_empty()
            && (!auth_prefix.starts_with('/')
                || crate::core::routes::normalise_path(&auth_prefix).as_deref()
                    != Ok(auth_prefix.as_str()))
        {
            problems.push(format!(
                "server.auth_prefix = {:?} must be \"\" or a plain path like \"/auth\"",
                self.auth_prefix
            ));
        }
        let health_path = problems.plain_path("health_path", &self.health_path);
        let ready_path = problems.plain_path("ready_path", &self.ready_path);
        if health_path == ready_path {
            problems.push("server.health_path and server.ready_path must differ");
        }
        for (key, path) in [("health_path", &health_path), ("ready_path", &ready_path)] {
            let shadowed = crate::core::endpoint::Endpoint::ALL
                .iter()
                .find(|e| format!("{}{}", auth_prefix, e.path()) == *path);
            if let Some(endpoint) = shadowed {
                problems.push(format!(
                    "server.{key} = {path:?} would hide the {} endpoint; choose another path",
                    endpoint.path()
                ));
            }
        }
        if self.max_authorization_header < 256 {
            problems.push("server.max_authorization_header must be at least 256 bytes");
        }
        if self.max_header_bytes < self.max_authorization_header + 1024 {
            problems.push(
                "server.max_header_bytes must exceed max_authorization_header by at least 1024",
            );
        }
        if self.max_connections == 0 {
            problems.push("server.max_connections must be at least 1");
        }
        if self.max_auth_body < 1024 {
            problems.push("server.max_auth_body must be at least 1024 bytes");
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter_map(|text| {
                let network = trusted_proxy(text);
                if network.is_none() {
                    problems.push(format!(
                        "server.trusted_proxies: {text:?} is not an IP address or a network such as \"10.0.0.0/8\""
                    ));
                }
                network
            })
            .collect();
        ServerSection {
            listen,
            auth_prefix,
            case_insensitive_routes: self.case_insensitive_routes,
            header_read_timeout: problems
                .at_least_a_second("server.header_read_timeout", &self.header_read_timeout),
            body_read_timeout: problems
                .at_least_a_second("server.body_read_timeout", &self.body_read_timeout),
            max_connections: self.max_connections,
            workers: if self.workers == 0 {
                std::thread::available_parallelism().map_or(2, |n| n.get())
            } else {
                self.workers
            },
            max_header_bytes: self.max_header_bytes,
            max_authorization_header: self.max_authorization_header,
            max_auth_body: self.max_auth_body,
            health_path,
            ready_path,
            shutdown_grace: problems.duration("server.shutdown_grace", &self.shutdown_grace),
            trusted_proxies,
        }
    }
}

impl RawUpstream {
    fn validate(self, problems: &mut Problems) -> UpstreamConfig {
        let base = parse_upstream(&self.url).unwrap_or_else(|p| {
            problems.push(p);
            http::Uri::from_static("http://127.0.0.1")
        });
        UpstreamConfig {
            base,
            timeout: problems.at_least_a_second("upstream.timeout", &self.timeout),
            connect_timeout: problems
                .at_least_a_second("upstream.connect_timeout", &self.connect_timeout),
            pool_idle_timeout: problems
                .duration("upstream.pool_idle_timeout", &self.pool_idle_timeout),
        }
    }
}

/// `[tokens]`, validated.
struct TokensSection {
    tokens: TokenConfig,
    locations: Vec<TokenLocation>,
    refresh_reuse_interval: Duration,
}

impl RawTokens {
    fn validate(self, problems: &mut Problems) -> TokensSection {
        let mut locations = Vec::new();
        for place in &self.location {
            let location = match place.as_str() {
                "headers" => TokenLocation::Headers,
                "cookies" => TokenLocation::Cookies,
                other => {
                    problems.push(format!(
                        "tokens.location: {other:?} is not a place tokens are read from: use \"headers\" and/or \"cookies\""
                    ));
                    continue;
                }
            };
            if locations.contains(&location) {
                problems.push(format!("tokens.location names {place:?} twice"));
            }
            locations.push(location);
        }
        if self.location.is_empty() {
            problems.push("tokens.location must name at least one of \"headers\" and \"cookies\"");
        }
        let refresh_reuse_interval = problems.duration(
            "tokens.refresh_reuse_interval",
            &self.refresh_reuse_interval,
        );
        let access_ttl = problems.at_least_a_second("tokens.access_ttl", &self.access_ttl);
        let refresh_ttl = problems.at_least_a_second("tokens.refresh_ttl", &self.refresh_ttl);
        if refresh_ttl < access_ttl {
            problems.push("tokens.refresh_ttl must not be shorter than tokens.access_ttl");
        }
        let algorithm = crate::core::keys::algorithm_named(&self.algorithm).unwrap_or_else(|| {
            problems.push(format!(
                "tokens.algorithm = {:?} is not supported: use \"HS256\", \"HS384\", \"HS512\", {}",
                self.algorithm,
                crate::core::keys::ASYMMETRIC_NAMES
            ));
            jsonwebtoken::Algorithm::HS256
        });
        let keys = load_keys(&self, algorithm).unwrap_or_else(|p| {
            problems.push(p);
            Vec::new()
        });
        if self.issuer.is_empty() {
            problems.push("tokens.issuer must not be empty");
        }
        let tokens = TokenConfig {
            keys,
            algorithm,
            access_ttl,
            refresh_ttl,
            leeway: problems.duration("tokens.leeway", &self.leeway),
            issuer: self.issuer,
            csrf_claim: false,
        };
        TokensSection {
            tokens,
            locations,
            refresh_reuse_interval,
        }
    }
}

impl RawCookies {
    fn validate(self, problems: &mut Problems) -> CookieConfig {
        let same_site = SameSite::parse(&self.same_site).unwrap_or_else(|| {
            problems.push(format!(
                "cookies.same_site = {:?}: use \"Strict\", \"Lax\" or \"None\"",
                self.same_site
            ));
            SameSite::Lax
        });
        if same_site == SameSite::None && !self.secure {
            problems.push("cookies.same_site = \"None\" needs cookies.secure = true: browsers refuse it otherwise");
        }
        if let Some(domain) = &self.domain {
            let valid = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                problems.push(format!(
                    "cookies.domain = {domain:?} must be a domain name like \"example.com\""
                ));
            }
        }
        CookieConfig {
            secure: self.secure,
            same_site,
            domain: self.domain,
            csrf_protect: self.csrf_protect,
        }
    }
}

impl RawLoginPage {
    fn validate(self, problems: &mut Problems) -> LoginPage {
        let template = self.template.and_then(|path| {
            match std::fs::read_to_string(&path) {
                Ok(text) if text.contains("{{content}}") => Some(text),
                Ok(_) => {
                    problems.push(format!(
                        "login_page.template = {}: the page must contain {{{{content}}}}, where the form goes",
                        path.display()
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("login_page.template: cannot read {}: {e}", path.display()));
                    None
                }
            }
        });
        LoginPage {
            title: self.title,
            product: self.product,
            template,
        }
    }
}

impl RawStore {
    /// The store, and how often replicas catch up with each other's revocations.
    fn validate(self, problems: &mut Problems) -> (StoreConfig, Duration) {
        let connect_timeout =
            problems.at_least_a_second("store.connect_timeout", &self.connect_timeout);
        let catch_up_interval =
            problems.at_least_a_second("store.catch_up_interval", &self.catch_up_interval);
        let store = store_config(&self, connect_timeout).unwrap_or_else(|p| {
            problems.push(p);
            StoreConfig::Sqlite {
                path: PathBuf::new(),
            }
        });
        (store, catch_up_interval)
    }
}

impl RawIdentity {
    fn validate(self, problems: &mut Problems) -> IdentityConfig {
        let mut header = |key: &str, name: &str| {
            http::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|_| {
                problems.push(format!("{key} = {name:?} is not a valid header name"));
                http::HeaderName::from_static("x-invalid")
            })
        };
        let mut identity = IdentityConfig {
            user_id_header: header("identity.user_id_header", &self.user_id_header),
            username_header: header("identity.username_header", &self.username_header),
            roles_header: header("identity.roles_header", &self.roles_header),
            assertion: None,
        };
        let assertion_header = self
            .assertion_header
            .as_deref()
            .map(|name| header("identity.assertion_header", name));
        let named = [
            ("user_id_header", Some(&identity.user_id_header)),
            ("username_header", Some(&identity.username_header)),
            ("roles_header", Some(&identity.roles_header)),
            ("assertion_header", assertion_header.as_ref()),
        ];
        for (key, name) in named {
            if let Some(name) =
                name.filter(|n| !crate::core::headers::may_carry_identity(n.as_str()))
            {
                problems.push(format!(
                    "identity.{key} = {:?}: a header that frames, routes or authenticates the \
                     request (or one authgate writes itself) cannot carry the identity; use a name \
                     of its own, such as \"X-Auth-…\"",
                    name.as_str()
                ));
            }
        }
        let key = |name: &http::HeaderName| crate::core::headers::header_key(name.as_str());
        let names: Vec<String> = [
            &identity.user_id_header,
            &identity.username_header,
            &identity.roles_header,
        ]
        .into_iter()
        .chain(assertion_header.as_ref())
        .map(key)
        .collect();
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            problems.push(
                "identity.user_id_header, username_header, roles_header and assertion_header must differ",
            );
        }
        identity.assertion = assertion_header.and_then(|header| self.assertion(header, problems));
        identity
    }

    /// `[identity]`'s assertion settings, checked; `None` with the problems noted.
    fn assertion(
        &self,
        header: http::HeaderName,
        problems: &mut Problems,
    ) -> Option<AssertionConfig> {
        let audience = match self.assertion_audience.as_deref() {
            Some(aud) if !aud.trim().is_empty() => aud.to_string(),
            _ => {
                problems.push(
                    "identity.assertion_audience is missing: name the app the assertion is for (its `aud`), e.g. \"my-app\"",
                );
                String::new()
            }
        };
        let algorithm = match crate::core::keys::algorithm_named(&self.assertion_algorithm) {
            Some(alg) if crate::core::keys::is_asymmetric(alg) => alg,
            _ => {
                problems.push(format!(
                    "identity.assertion_algorithm = {:?}: use {}, which the app verifies with a public key",
                    self.assertion_algorithm,
                    crate::core::keys::ASYMMETRIC_NAMES
                ));
                return None;
            }
        };
        let ttl = problems.at_least_a_second("identity.assertion_ttl", &self.assertion_ttl);
        if ttl > crate::core::assertion::MAX_TTL {
            problems.push("identity.assertion_ttl must be at most 60s");
        }
        if self.assertion_keys.is_empty() {
            problems.push(format!(
                "identity.assertion_keys is empty: add [[identity.assertion_keys]] with private_key_file (make one with `authgate keygen --algorithm {algorithm:?} > assertion-key.pem`)"
            ));
            return None;
        }
        let keys = keys::load_key_list("identity.assertion_keys", &self.assertion_keys, algorithm)
            .map_err(|p| problems.push(p))
            .ok()?;
        Some(AssertionConfig {
            header,
            audience,
            algorithm,
            ttl,
            keys,
        })
    }
}

impl RawPasswords {
    fn validate(self, problems: &mut Problems) -> PasswordConfig {
        if argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None).is_err() {
            problems.push(format!(
                "passwords: memory_kib = {}, iterations = {}, parallelism = {} are not valid argon2 parameters",
                self.memory_kib, self.iterations, self.parallelism
            ));
        }
        PasswordConfig {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
            // Half the CPUs by default: a burst of logins must leave the other half to proxied
            // traffic.
            max_concurrent_hashes: if self.max_concurrent_hashes == 0 {
                (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1)
            } else {
                self.max_concurrent_hashes
            },
            max_waiting_hashes: self.max_waiting_hashes,
            max_wait: problems.at_least_a_second("passwords.max_wait", &self.max_wait),
        }
    }
}

impl RawLoginLimits {
    fn validate(self, problems: &mut Problems) -> LoginLimits {
        LoginLimits {
            per_user: self.per_user,
            per_address: self.per_address,
            window: problems.at_least_a_second("login_limits.window", &self.window),
        }
    }
}

impl RawMetrics {
    fn validate(self, problems: &mut Problems) -> Option<SocketAddr> {
        let text = self.listen?;
        text.parse()
            .map_err(|_| {
                problems.push(format!(
                    "metrics.listen = {text:?} is not an address like \"127.0.0.1:9090\""
                ))
            })
            .ok()
    }
}

impl RawLog {
    fn validate(self, problems: &mut Problems) -> LogFormat {
        match self.format.as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                problems.push(format!(
                    "log.format = {other:?} must be \"human\" or \"json\""
                ));
                LogFormat::Human
            }
        }
    }
}

/// A network (`10.0.0.0/8`, `fd00::/8`) or a single address (`10.1.2.3`, `::1`).
fn trusted_proxy(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

fn store_config(raw: &RawStore, connect_timeout: Duration) -> Result<StoreConfig, String> {
    let postgres = |url: String| {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("store.url must start with postgres:// or postgresql://".to_string());
        }
        if raw.max_connections == 0 {
            return Err("store.max_connections must be at least 1".to_string());
        }
        Ok(StoreConfig::Postgres {
            url,
            max_connections: raw.max_connections,
            connect_timeout,
        })
    };
    match (&raw.path, &raw.url, &raw.url_env) {
        (None, None, None) => Ok(StoreConfig::Sqlite {
            path: PathBuf::from("data/authgate.db"),
        }),
        (Some(path), None, None) => Ok(StoreConfig::Sqlite { path: path.clone() }),
        (None, Some(url), None) => postgres(url.clone()),
        (None, None, Some(var)) => match std::env::var(var) {
            Ok(url) => postgres(url),
            Err(_) => Err(format!(
                "store.url_env: environment variable {var} is not set"
            )),
        },
        _ => Err("store: set at most one of path (SQLite), url or url_env (PostgreSQL)".into()),
    }
}

fn parse_upstream(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|_| {
        format!("upstream.url = {url:?} is not a URL like \"http://127.0.0.1:9000\"")
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "upstream.url = {url:?} must start with http:// (authgate speaks plain HTTP to the app beside it)"
        ));
    }
    if uri.authority().is_none() {
        return Err(format!("upstream.url = {url:?} has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "upstream.url = {url:?} must not have a path or query: requests keep their own path"
        ));
    }
    Ok(uri)
}

fn route_rule(route: &RawRoute) -> Result<RouteRule, String> {
    let access = match (route.access.as_deref(), &route.roles) {
        (Some("public"), _) => Access::Public,
        (Some("authenticated"), _) | (None, Some(_)) => Access::Authenticated,
        (Some("deny"), _) => Access::Deny,
        (Some(other), _) => {
            return Err(format!(
                "access = {other:?} must be \"public\", \"authenticated\" or \"deny\""
            ));
        }
        (None, None) => {
            return Err(
                "access is missing: \"public\", \"authenticated\" or \"deny\" (or roles = [...])"
                    .into(),
            );
        }
    };
    let methods = match &route.methods {
        None => None,
        Some(list) if list.is_empty() => {
            return Err("methods must not be empty (leave it out to match every method)".into());
        }
        Some(list) => {
            let mut methods = Vec::new();
            for m in list {
                let upper = m.to_ascii_uppercase();
                http::Method::from_bytes(upper.as_bytes())
                    .map_err(|_| format!("method {m:?} is not an HTTP method"))?;
                methods.push(upper);
            }
            Some(methods)
        }
    };
    let rule = RouteRule::new(&route.path, methods, access)?;
    match &route.roles {
        Some(roles) => rule.with_roles(roles.clone()),
        None => Ok(rule),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:9000"
[tokens]
secret = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
[[routes]]
path = "/public/**"
methods = ["get"]
access = "public"
"#;

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.tokens.access_ttl, Duration::from_secs(15 * 60));
        assert_eq!(c.tokens.refresh_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(c.tokens.leeway, Duration::ZERO);
        assert_eq!(c.tokens.issuer, "authgate");
        assert_eq!(c.auth_prefix, "");
        assert_eq!(c.routes.rules().len(), 1);
        assert_eq!(c.identity.user_id_header.as_str(), "x-auth-user-id");
        assert_eq!(c.passwords.max_wait, Duration::from_secs(10));
    }

    #[test]
    fn browser_settings_default_to_headers_only_and_are_checked() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.token_locations, [TokenLocation::Headers]);
        assert!(
            !c.cookies_enabled() && !c.tokens.csrf_claim,
            "nothing changes by default"
        );
        assert_eq!(c.refresh_reuse_interval, Duration::from_secs(10));
        assert_eq!(c.cookies, CookieConfig::default());
        assert!(c.allow_registration);

        let with = |tokens: &str, rest: &str| {
            let text = GOOD.replace("[tokens]\n", &format!("[tokens]\n{tokens}\n"));
            Config::parse(&format!("{text}{rest}"))
        };
        let c = with(r#"location = ["cookies", "headers"]"#, "").unwrap();
        assert_eq!(
            c.token_locations,
            [TokenLocation::Cookies, TokenLocation::Headers]
        );
        assert!(c.tokens.csrf_claim, "cookie tokens carry the csrf claim");
        let c = with(
            r#"location = ["cookies"]"#,
            "[cookies]\ncsrf_protect = false\n",
        )
        .unwrap();
        assert!(!c.tokens.csrf_claim);

        for (tokens, rest, expected) in [
            (
                r#"location = ["query"]"#,
                "",
                "\"query\" is not a place tokens are read from",
            ),
            (r#"location = []"#, "", "must name at least one"),
            (
                r#"location = ["cookies", "cookies"]"#,
                "",
                "names \"cookies\" twice",
            ),
            (
                "",
                "[cookies]\nsame_site = \"lax\"\n",
                "use \"Strict\", \"Lax\" or \"None\"",
            ),
            (
                "",
                "[cookies]\nsame_site = \"None\"\nsecure = false\n",
                "needs cookies.secure = true",
            ),
            (
                "",
                "[cookies]\ndomain = \"evil.example; Path=/\"\n",
                "must be a domain name",
            ),
            (
                "",
                "[login_page]\ntemplate = \"/nonexistent/page.html\"\n",
                "cannot read",
            ),
        ] {
            let err = with(tokens, rest).unwrap_err().to_string();
            assert!(err.contains(expected), "{tokens} {rest}: {err}");
        }
    }

    #[test]
    fn a_hash_wait_under_a_second_is_refused() {
        let text = format!("{GOOD}[passwords]\nmax_wait = \"100ms\"\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("passwords.max_wait must be at least 1s"),
            "{err}"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let with = |list: &str| {
            GOOD.replace(
                "[server]\n",
                &format!("[server]\ntrusted_proxies = {list}\n"),
            )
        };
        let config = Config::parse(&with(r#"["10.0.0.0/8", "::1", " 192.168.1.7 "]"#)).unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "::1/128", "192.168.1.7/32"]);
        assert!(Config::parse(GOOD).unwrap().trusted_proxies.is_empty());

        let err = Config::parse(&with(r#"["10.0.0.0/33", "ingress"]"#))
            .unwrap_err()
            .to_string();
        for bad in ["\"10.0.0.0/33\"", "\"ingress\""] {
            assert!(
                err.contains(&format!("server.trusted_proxies: {bad} is not")),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_name_and_line() {
        let text = GOOD.replace("[tokens]\n", "[tokens]\nsecrit = \"x\"\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("secrit"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[server]
listen = "nowhere"
header_read_timeout = "soon"
[upstream]
url = "https://example.com/app"
[tokens]
secret = "short"
[[routes]]
path = "public"
access = "open"
"#;
        let problems = Config::parse(text).unwrap_err().0;
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn a_rule_with_roles_is_authenticated_and_roles_elsewhere_are_problems() {
        let with = |route: &str| GOOD.to_string() + "[[routes]]\n" + route + "\n";
        let c = Config::parse(&with(
            "path = \"/billing/**\"\nroles = [\"billing\", \"admin\"]",
        ))
        .unwrap();
        let rule = c.routes.rules().last().unwrap();
        assert_eq!(rule.access, Access::Authenticated);
        assert_eq!(rule.roles, ["billing", "admin"]);
        assert!(
            Config::parse(&with(
                "path = \"/b/**\"\naccess = \"authenticated\"\nroles = [\"admin\"]"
            ))
            .is_ok()
        );
        for (route, expected) in [
            (
                "path = \"/b/**\"\naccess = \"public\"\nroles = [\"admin\"]",
                "roles need an authenticated route",
            ),
            (
                "path = \"/b/**\"\naccess = \"deny\"\nroles = [\"admin\"]",
                "roles need an authenticated route",
            ),
            ("path = \"/b/**\"\nroles = []", "roles must not be empty"),
            ("path = \"/b/**\"\nroles = [\"Admin\"]", "role \"Admin\""),
            ("path = \"/b/**\"", "access is missing"),
        ] {
            let err = Config::parse(&with(route)).unwrap_err().to_string();
            assert!(err.contains(expected), "{route}: {err}");
        }
        let clash = GOOD.to_string() + "[identity]\nroles_header = \"x-auth-user_id\"\n";
        let err = Config::parse(&clash).unwrap_err().to_string();
        assert!(err.contains("must differ"), "{err}");
    }

    /// Every way a private key or an assertion setting can be wrong says what is wrong and how to
    /// make a key.
    #[test]
    fn asymmetric_keys_and_assertions_are_checked_before_anything_starts() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
        let dir = tempfile::tempdir().unwrap();
        let ed = dir.path().join("ed.pem");
        std::fs::write(&ed, crate::core::keys::tests::ED25519_PEM).unwrap();
        let tokens = |lines: &str| {
            GOOD.replace(
                "secret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"",
                lines,
            )
        };
        let file = |name: &str| keys.join(name).display().to_string();
        let good = tokens(&format!(
            "algorithm = \"EdDSA\"\nprivate_key_file = {:?}",
            ed.display().to_string()
        ));
        let c = Config::parse(&good).unwrap();
        assert!(c.publishes_keys());
        let kid = c.tokens.keys[0].kid.clone().unwrap();
        assert_eq!(kid.len(), 43, "named by its RFC 7638 thumbprint: {kid}");
        assert!(!Config::parse(GOOD).unwrap().publishes_keys());

        for (text, expected) in [
            (
                tokens(
                    "algorithm = \"EdDSA\"\nsecret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"",
                ),
                "EdDSA signs with a private key, not a secret",
            ),
            (
                tokens("algorithm = \"ES256\""),
                "private_key_file is missing; make one with `authgate keygen --algorithm ES256",
            ),
            (
                tokens(&format!(
                    "algorithm = \"ES256\"\nprivate_key_file = {:?}",
                    file("p384.pem")
                )),
                "is not a P-256 (prime256v1) EC private key",
            ),
            (
                tokens(&format!(
                    "algorithm = \"RS256\"\nprivate_key_file = {:?}",
                    file("rsa1024.pem")
                )),
                "is an RSA key of 1024 bits: use 2048 bits or more",
            ),
            (
                tokens(&format!(
                    "algorithm = \"EdDSA\"\nprivate_key_file = {:?}",
                    file("rs256.pem")
                )),
                "is not an Ed25519 private key",
            ),
            (
                tokens("algorithm = \"EdDSA\"\nprivate_key_file = \"/nonexistent/key.pem\""),
                "cannot read /nonexistent/key.pem",
            ),
            (
                tokens("algorithm = \"PS256\"\nsecret = \"x\""),
                "tokens.algorithm = \"PS256\" is not supported",
            ),
        ] {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let hs_with_key = GOOD.replace(
            "secret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"",
            &format!(
                "[[tokens.keys]]\nsecret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"\nprivate_key_file = {:?}",
                ed.display().to_string()
            ),
        );
        let err = Config::parse(&hs_with_key).unwrap_err().to_string();
        assert!(err.contains("HS256 signs with a secret"), "{err}");

        let identity = |lines: &str| format!("{GOOD}[identity]\n{lines}\n");
        let key = format!(
            "[[identity.assertion_keys]]\nkid = \"a1\"\nprivate_key_file = {:?}",
            ed.display().to_string()
        );
        let c = Config::parse(&identity(&format!(
            "assertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"app\"\n{key}"
        )))
        .unwrap();
        let assertion = c.identity.assertion.as_ref().unwrap();
        assert_eq!(assertion.ttl, Duration::from_secs(60));
        assert_eq!(assertion.algorithm, jsonwebtoken::Algorithm::EdDSA);
        assert!(c.publishes_keys());
        assert!(
            !format!("{c:?}").contains("PRIVATE KEY"),
            "keys never printed"
        );
        for (lines, expected) in [
            (
                format!("assertion_header = \"X-Auth-Assertion\"\n{key}"),
                "identity.assertion_audience is missing",
            ),
            (
                format!(
                    "assertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"app\"\nassertion_algorithm = \"HS256\"\n{key}"
                ),
                "which the app verifies with a public key",
            ),
            (
                format!(
                    "assertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"app\"\nassertion_ttl = \"61s\"\n{key}"
                ),
                "identity.assertion_ttl must be at most 60s",
            ),
            (
                "assertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"app\"".to_string(),
                "identity.assertion_keys is empty",
            ),
            (
                format!(
                    "assertion_header = \"x-auth-user-id\"\nassertion_audience = \"app\"\n{key}"
                ),
                "must differ",
            ),
            (
                format!(
                    "assertion_header = \"X-Auth-Assertion\"\nassertion_audience = \"app\"\nassertion_algorithm = \"ES256\"\n{key}"
                ),
                "is not a P-256 (prime256v1) EC private key",
            ),
        ] {
            let err = Config::parse(&identity(&lines)).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn weak_or_missing_secrets_say_how_to_fix_it() {
        for secret_line in [
            "secret = \"tooshort\"",
            "secret = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            "secret_env = \"AUTHGATE_TEST_SURELY_UNSET_VARIABLE\"",
            "",
        ] {
            let text = GOOD.replace(
                "secret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"",
                secret_line,
            );
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("openssl rand"), "{secret_line}: {err}");
        }
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "file-secret-0123456789-abcdefghijklmnopqrstuv\n").unwrap();
        let text = GOOD.replace(
            "secret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"",
            &format!("secret_file = {:?}", file.display().to_string()),
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(
            c.tokens.keys[0].secret,
            b"file-secret-0123456789-abcdefghijklmnopqrstuv"
        );
    }

    #[test]
    fn signing_keys_can_be_listed_for_rotation() {
        let keys = r#"
[[tokens.keys]]
kid = "new"
secret = "new-secret-0123456789-abcdefghijklmnopqrstuv"
[[tokens.keys]]
secret = "old-secret-0123456789-abcdefghijklmnopqrstuv"
"#;
        let text = GOOD
            .replace(
                "secret = \"0123456789abcdefghijklmnopqrstuvwxyzABCDEF\"\n",
                "",
            )
            .replace("[[routes]]", &format!("{keys}[[routes]]"));
        let c = Config::parse(&text).unwrap();
        let kids: Vec<_> = c.tokens.keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, [Some("new".to_string()), None]);

        let both = GOOD.replace("[[routes]]", &format!("{keys}[[routes]]"));
        assert!(
            Config::parse(&both)
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let twice = text.replace("kid = \"new\"\n", "");
        assert!(
            Config::parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("only one key may have no kid")
        );
        let weak = text.replace("new-secret-0123456789-abcdefghijklmnopqrstuv", "weak");
        assert!(
            Config::parse(&weak)
                .unwrap_err()
                .to_string()
                .contains("tokens.keys[0]: the signing secret is too weak")
        );
    }

    #[test]
    fn probe_paths_may_not_hide_auth_endpoints() {
        let text = GOOD.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nhealth_path = \"/login\"",
        );
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("would hide the /login endpoint"), "{err}");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let c = Config::parse(GOOD).unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_example_config_is_valid() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe {
            std::env::set_var(
                "AUTHGATE_SECRET",
                "an-example-secret-that-is-long-enough-0123456789",
            )
        };
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/authgate.toml");
        Config::load(&path).unwrap();
    }
}
