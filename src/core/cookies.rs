//! Cookies, for browsers: the four Flask-JWT-Extended cookies read from a request's `Cookie`
//! fields, and written as `Set-Cookie` values with the configured attributes.

use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The cookie that carries the access token (Flask-JWT-Extended's `JWT_ACCESS_COOKIE_NAME`).
pub const ACCESS_COOKIE: &str = "access_token_cookie";
/// The cookie that carries the refresh token.
pub const REFRESH_COOKIE: &str = "refresh_token_cookie";
/// The access token's `csrf` claim, readable by the page's scripts for `X-CSRF-TOKEN`.
pub const ACCESS_CSRF_COOKIE: &str = "csrf_access_token";
/// The refresh token's `csrf` claim.
pub const REFRESH_CSRF_COOKIE: &str = "csrf_refresh_token";
/// The login form's double-submit token: set with the form, sent back in its `csrf_token` field.
pub const LOGIN_CSRF_COOKIE: &str = "authgate_login_csrf";
/// The same, as a `__Host-` cookie (with `Secure` cookies): only this host can set it.
pub const HOST_LOGIN_CSRF_COOKIE: &str = "__Host-authgate_login_csrf";

/// Where a request's token may be found (`tokens.location`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLocation {
    /// `Authorization: Bearer …`.
    Headers,
    /// `access_token_cookie` (and `refresh_token_cookie` for a refresh).
    Cookies,
}

/// `SameSite`, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn parse(text: &str) -> Option<SameSite> {
        match text {
            "Strict" => Some(SameSite::Strict),
            "Lax" => Some(SameSite::Lax),
            "None" => Some(SameSite::None),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// The attributes every cookie authgate sets carries (`[cookies]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    pub secure: bool,
    pub same_site: SameSite,
    /// `None`: host-only.
    pub domain: Option<String>,
    pub csrf_protect: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            csrf_protect: true,
        }
    }
}

/// Whether a page's scripts may read the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `HttpOnly`: tokens.
    Hidden,
    /// Readable: the CSRF values, which scripts copy into `X-CSRF-TOKEN`.
    Readable,
}

impl CookieConfig {
    /// A `Set-Cookie` value: `name=value`, `Path=path`, kept for `max_age`, with the configured
    /// attributes. Values are authgate's own (tokens, UUIDs): never anything a client sent.
    pub fn set(
        &self,
        name: &str,
        value: &str,
        path: &str,
        max_age: Duration,
        script: Script,
    ) -> String {
        let mut out = format!("{name}={value}; Path={path}; Max-Age={}", max_age.as_secs());
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if script == Script::Hidden {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
        out
    }

    /// A `Set-Cookie` value that makes the browser forget `name` (at `path`).
    pub fn clear(&self, name: &str, path: &str, script: Script) -> String {
        self.set(name, "", path, Duration::ZERO, script)
    }
}

/// The pairs of the request's `Cookie` fields, each as (name, value) bytes trimmed of blanks,
/// in order. Read as bytes, so that one cookie with bytes outside ASCII (browsers send UTF-8 as
/// it is) does not hide the others; split on `,` as well as `;`, since no cookie value holds a
/// comma and lenient parsers (Werkzeug's) split there.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';' || b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
            None => (pair, &b""[..]),
        })
}

/// The value of the first cookie called `name` (exactly, as browsers send it) that has one, or
/// `None`. Quotes around a value are dropped.
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    pairs(headers)
        .filter(|(key, _)| *key == name.as_bytes())
        .map(|(_, value)| {
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value)
        })
        .find(|value| !value.is_empty())
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// `headers`' `Cookie` fields as one value, without the cookies called any of `names` (compared
/// without regard to case, as lenient parsers do) and with `add` at the end; `None` when nothing
/// is left. The refresh token is authgate's alone: the app never sees it.
pub fn rebuilt(
    headers: &HeaderMap,
    names: &[&str],
    add: Option<(&str, &str)>,
) -> Option<HeaderValue> {
    let mut out: Vec<u8> = Vec::new();
    let kept = pairs(headers)
        .filter(|(key, _)| !names.iter().any(|n| key.eq_ignore_ascii_case(n.as_bytes())));
    for (key, value) in kept {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(key);
        if !value.is_empty() || key.is_empty() {
            out.push(b'=');
            out.extend_from_slice(value);
        }
    }
    if let Some((name, value)) = add {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    if out.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name_in_any_cookie_field() {
        let h = cookies(&["a=1; access_token_cookie=tok; b=2", "c=3"]);
        assert_eq!(find(&h, ACCESS_COOKIE), Some("tok"));
        assert_eq!(find(&h, "c"), Some("3"));
        assert_eq!(find(&h, "access_token"), None, "no prefix match");
        assert_eq!(
            find(&cookies(&["xaccess_token_cookie=1"]), ACCESS_COOKIE),
            None
        );
        assert_eq!(
            find(&cookies(&["access_token_cookie="]), ACCESS_COOKIE),
            None
        );
        assert_eq!(
            find(&cookies(&["access_token_cookie"]), ACCESS_COOKIE),
            None
        );
        assert_eq!(
            find(&cookies(&["access_token_cookie=\"q\""]), ACCESS_COOKIE),
            Some("q")
        );
        assert_eq!(
            find(
                &cookies(&["access_token_cookie=first; access_token_cookie=second"]),
                ACCESS_COOKIE
            ),
            Some("first"),
            "the first, as browsers send the most specific path first"
        );
        assert_eq!(find(&HeaderMap::new(), ACCESS_COOKIE), None);
    }

    #[test]
    fn the_refresh_cookie_is_taken_out_of_what_the_app_gets_however_it_is_written() {
        let names = [REFRESH_COOKIE, LOGIN_CSRF_COOKIE];
        let kept = |values: &[&str]| rebuilt(&cookies(values), &names, None);
        assert_eq!(
            kept(&[
                "a=1; refresh_token_cookie=r; access_token_cookie=t",
                "refresh_token_cookie=x"
            ])
            .unwrap(),
            "a=1; access_token_cookie=t"
        );
        for sneaky in [
            "refresh_token_cookie =r",
            "refresh_token_cookie\t=r",
            "x=1, refresh_token_cookie=r",
            "REFRESH_TOKEN_COOKIE=r",
            " refresh_token_cookie=r ",
        ] {
            let rebuilt = kept(&[sneaky]);
            assert!(
                rebuilt
                    .as_ref()
                    .is_none_or(|v| !v.to_str().unwrap().contains("=r")),
                "{sneaky:?}: {rebuilt:?}"
            );
        }
        assert_eq!(kept(&["refresh_token_cookie=r"]), None);
        assert_eq!(kept(&[]), None);
        let replaced = rebuilt(
            &cookies(&["a=1; access_token_cookie=old; access_token_cookie=other"]),
            &[ACCESS_COOKIE],
            Some((ACCESS_COOKIE, "new")),
        );
        assert_eq!(
            replaced.unwrap(),
            "a=1; access_token_cookie=new",
            "one access cookie: the one authgate checked"
        );
    }

    /// Browsers send a cookie's UTF-8 as it is: the other cookies are still read and passed on.
    #[test]
    fn a_cookie_with_bytes_outside_ascii_hides_no_other() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"pref=\xc3\xa9t\xc3\xa9; access_token_cookie=tok").unwrap(),
        );
        assert_eq!(find(&h, ACCESS_COOKIE), Some("tok"));
        assert_eq!(
            rebuilt(&h, &[REFRESH_COOKIE], None).unwrap().as_bytes(),
            b"pref=\xc3\xa9t\xc3\xa9; access_token_cookie=tok"
        );
    }

    #[test]
    fn set_cookie_values_carry_the_configured_attributes() {
        let config = CookieConfig::default();
        assert_eq!(
            config.set(
                ACCESS_COOKIE,
                "tok",
                "/",
                Duration::from_secs(900),
                Script::Hidden
            ),
            "access_token_cookie=tok; Path=/; Max-Age=900; Secure; HttpOnly; SameSite=Lax"
        );
        let plain = CookieConfig {
            secure: false,
            same_site: SameSite::Strict,
            domain: Some("example.com".into()),
            csrf_protect: true,
        };
        assert_eq!(
            plain.set(
                ACCESS_CSRF_COOKIE,
                "c",
                "/",
                Duration::from_secs(60),
                Script::Readable
            ),
            "csrf_access_token=c; Path=/; Max-Age=60; Domain=example.com; SameSite=Strict"
        );
        assert_eq!(
            config.clear(REFRESH_COOKIE, "/", Script::Hidden),
            "refresh_token_cookie=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"
        );
        assert_eq!(SameSite::parse("None"), Some(SameSite::None));
        assert_eq!(SameSite::parse("lax"), None, "written as the attribute is");
    }
}
