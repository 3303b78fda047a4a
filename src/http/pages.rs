//! The pages a browser signs in, signs up and signs out with (when `tokens.location` names
//! cookies): plain HTML forms, no script, no outside assets; and their form posts, which answer
//! with a page again or a `303` onwards.
//!
//! The sign-in and sign-up forms carry a double-submit token of their own
//! (`__Host-authgate_login_csrf` with `Secure` cookies, `authgate_login_csrf` without;
//! `SameSite=Strict`, set with the form): a form that another site posts cannot have it, so no
//! one can sign a visitor into an account of the attacker's ("login CSRF").

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::config::Config;
use crate::core::browser::safe_next;
use crate::core::cookies::{
    self, ACCESS_COOKIE, HOST_LOGIN_CSRF_COOKIE, LOGIN_CSRF_COOKIE, REFRESH_COOKIE, SameSite,
    Script,
};
use crate::core::endpoint::Endpoint;
use crate::core::form_fields::{encode, form_fields};
use crate::core::token::TokenKind;
use crate::http::body::{Body, full};
use crate::http::cookies as session_cookies;
use crate::http::error::ApiError;
use crate::http::gate::Gate;

/// How long a sign-in form may wait to be sent.
const FORM_LIFETIME: Duration = Duration::from_secs(3600);

/// The frame every page is drawn in, unless `login_page.template` replaces it.
const FRAME: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
body{margin:0;font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330}
main{max-width:22rem;margin:10vh auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 4px #0002}
.product{margin:0;color:#5a6478;font-size:.9rem}
h1{margin:.2rem 0 1.2rem;font-size:1.5rem}
label{display:block;margin-top:.8rem;font-weight:600}
input{box-sizing:border-box;width:100%;padding:.55rem;margin-top:.25rem;font:inherit;border:1px solid #b8bfcc;border-radius:.3rem}
button{width:100%;margin-top:1.4rem;padding:.65rem;font:inherit;font-weight:600;color:#fff;background:#2456c9;border:0;border-radius:.3rem;cursor:pointer}
.error{padding:.5rem .7rem;color:#8a1020;background:#fde8eb;border-radius:.3rem}
.notice{padding:.5rem .7rem;color:#0c5a2e;background:#e3f6ea;border-radius:.3rem}
a{color:#2456c9}
</style>
</head>
<body>
<main>
<p class="product">{{product}}</p>
{{content}}
</main>
</body>
</html>
"#;

/// A `GET` of a page.
pub(crate) fn page(
    gate: &Gate,
    endpoint: Endpoint,
    headers: &HeaderMap,
    query: &str,
) -> Response<Body> {
    let [next, registered] = form_fields(query.as_bytes(), ["next", "registered"]);
    let next = safe_next(next.as_deref().unwrap_or("/")).to_string();
    match endpoint {
        Endpoint::Register if !gate.config.allow_registration => closed(&gate.config),
        Endpoint::Register => {
            form_page(&gate.config, Form::SignUp, &next, "", None, StatusCode::OK)
        }
        Endpoint::Logout => sign_out_page(gate, headers),
        _ => {
            let notice = registered.map(|_| Message::Notice("Account created. Sign in below."));
            form_page(
                &gate.config,
                Form::SignIn,
                &next,
                "",
                notice,
                StatusCode::OK,
            )
        }
    }
}

/// What a form post said, and which form it was.
pub(crate) struct Posted {
    username: String,
    password: String,
    next: String,
    /// The form's own token equals the cookie set with the form.
    fresh: bool,
}

impl Posted {
    pub(crate) fn read(config: &Config, headers: &HeaderMap, body: &Bytes) -> Posted {
        let [username, password, next, token] =
            form_fields(body, ["username", "password", "next", "csrf_token"]);
        let cookie = cookies::find(headers, form_cookie_name(config));
        let fresh =
            matches!((token.as_deref(), cookie), (Some(t), Some(c)) if !t.is_empty() && t == c);
        Posted {
            username: username.unwrap_or_default(),
            password: password.unwrap_or_default(),
            next: safe_next(next.as_deref().unwrap_or("/")).to_string(),
            fresh,
        }
    }
}

/// The sign-in form, posted: `303` to `next` with the session's cookies, or the form again.
pub(crate) async fn sign_in(gate: &Gate, posted: Posted, client: IpAddr) -> Response<Body> {
    let config = &gate.config;
    if !posted.fresh {
        return expired(config, Form::SignIn, &posted);
    }
    let result = match gate.sessions.admit_login(client) {
        Ok(()) => {
            gate.sessions
                .login(&posted.username, posted.password.clone())
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(pair) => {
            let mut response = see_other(&posted.next);
            let mut set = session_cookies::for_pair(config, &pair);
            set.push(clear_form_cookie(config));
            session_cookies::attach(&mut response, set);
            response
        }
        Err(e) => failed(config, Form::SignIn, &posted, ApiError::from(e)),
    }
}

/// The sign-up form, posted: the account is made and the browser sent to sign in.
pub(crate) async fn sign_up(gate: &Gate, posted: Posted) -> Response<Body> {
    let config = &gate.config;
    if !config.allow_registration {
        return closed(config);
    }
    if !posted.fresh {
        return expired(config, Form::SignUp, &posted);
    }
    match gate
        .sessions
        .register(posted.username.clone(), posted.password.clone(), Vec::new())
        .await
    {
        Ok(_) => see_other(&format!(
            "{}/login?registered=1&next={}",
            config.auth_prefix,
            encode(&posted.next)
        )),
        Err(e) => failed(config, Form::SignUp, &posted, ApiError::from(e)),
    }
}

/// The sign-out form, posted: the session is revoked (if a token of it came) and its cookies
/// cleared; then the sign-in page.
pub(crate) fn signed_out(config: &Config) -> Response<Body> {
    let mut response = see_other(&format!("{}/login", config.auth_prefix));
    session_cookies::attach(&mut response, session_cookies::cleared(config));
    response
}

/// A page that says what went wrong with a form, at `status`.
pub(crate) fn error_page(
    config: &Config,
    title: &str,
    message: &str,
    status: StatusCode,
) -> Response<Body> {
    let content = format!(
        "<h1>{}</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n<p><a href=\"{}/login\">Sign in</a></p>",
        escape(title),
        escape(message),
        escape(&config.auth_prefix)
    );
    html(config, title, &content, status)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    SignIn,
    SignUp,
}

enum Message<'a> {
    Error(&'a str),
    Notice(&'a str),
}

fn form_page(
    config: &Config,
    form: Form,
    next: &str,
    username: &str,
    message: Option<Message<'_>>,
    status: StatusCode,
) -> Response<Body> {
    let prefix = escape(&config.auth_prefix);
    let token = uuid::Uuid::new_v4().to_string();
    let (title, action, button, password_kind, other) = match form {
        Form::SignIn => (
            config.login_page.title.as_str(),
            "login",
            "Sign in",
            "current-password",
            config.allow_registration.then(|| {
                format!(
                    "<p>No account yet? <a href=\"{prefix}/register?next={}\">Sign up</a></p>",
                    escape(&encode(next))
                )
            }),
        ),
        Form::SignUp => (
            "Sign up",
            "register",
            "Create account",
            "new-password",
            Some(format!(
                "<p>Have an account? <a href=\"{prefix}/login?next={}\">Sign in</a></p>",
                escape(&encode(next))
            )),
        ),
    };
    let message = match message {
        Some(Message::Error(text)) => {
            format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(text))
        }
        Some(Message::Notice(text)) => {
            format!("<p class=\"notice\" role=\"status\">{}</p>\n", escape(text))
        }
        None => String::new(),
    };
    let content = format!(
        "<h1>{title}</h1>\n{message}<form method=\"post\" action=\"{prefix}/{action}\">\n\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{token}\">\n\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{username}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"{password_kind}\" required>\n\
         <button type=\"submit\">{button}</button>\n</form>\n{other}",
        title = escape(title),
        next = escape(next),
        username = escape(username),
        other = other.unwrap_or_default(),
    );
    let mut response = html(config, title, &content, status);
    let form_cookie = form_cookies(config).set(
        form_cookie_name(config),
        &token,
        form_cookie_path(config),
        FORM_LIFETIME,
        Script::Hidden,
    );
    session_cookies::attach(&mut response, vec![form_cookie]);
    response
}

/// The sign-out page: who is signed in and a button, or that no one is.
fn sign_out_page(gate: &Gate, headers: &HeaderMap) -> Response<Body> {
    let config = &gate.config;
    let prefix = escape(&config.auth_prefix);
    let signed_in = [
        (ACCESS_COOKIE, TokenKind::Access),
        (REFRESH_COOKIE, TokenKind::Refresh),
    ]
    .into_iter()
    .find_map(|(name, kind)| {
        let token = cookies::find(headers, name)?;
        gate.authenticator.admit(token, Some(kind)).ok()
    });
    let content = match signed_in {
        Some(claims) => format!(
            "<h1>Sign out</h1>\n<p>Signed in as <strong>{}</strong>.</p>\n\
             <form method=\"post\" action=\"{prefix}/logout\">\n\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\n\
             <button type=\"submit\">Sign out</button>\n</form>",
            escape(&claims.username),
            escape(claims.csrf.as_deref().unwrap_or_default()),
        ),
        None => format!(
            "<h1>Signed out</h1>\n<p>No one is signed in here.</p>\n<p><a href=\"{prefix}/login\">Sign in</a></p>"
        ),
    };
    html(config, "Sign out", &content, StatusCode::OK)
}

fn failed(config: &Config, form: Form, posted: &Posted, error: ApiError) -> Response<Body> {
    let status = error.status();
    let message = error.message();
    let mut response = form_page(
        config,
        form,
        &posted.next,
        &posted.username,
        Some(Message::Error(&message)),
        status,
    );
    if let ApiError::TooManyAttempts(_) = error {
        if let Some(wait) = error.into_response().headers().get(header::RETRY_AFTER) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.clone());
        }
    }
    response
}

fn expired(config: &Config, form: Form, posted: &Posted) -> Response<Body> {
    form_page(
        config,
        form,
        &posted.next,
        &posted.username,
        Some(Message::Error("This form has expired. Please try again.")),
        StatusCode::FORBIDDEN,
    )
}

fn closed(config: &Config) -> Response<Body> {
    error_page(
        config,
        "Sign up",
        "Registration is disabled.",
        StatusCode::FORBIDDEN,
    )
}

/// The form cookie's attributes: `SameSite=Strict` whatever `cookies.same_site` says, so a form
/// posted from another site comes without it; and never a `Domain`, so no other host of the
/// domain shares it.
fn form_cookies(config: &Config) -> cookies::CookieConfig {
    cookies::CookieConfig {
        same_site: SameSite::Strict,
        domain: None,
        ..config.cookies.clone()
    }
}

/// With `Secure` cookies the form's is a `__Host-` cookie: browsers let only this host set it,
/// over HTTPS, so a sibling subdomain or a network attacker cannot plant one (cookie tossing)
/// to match a form of their own.
fn form_cookie_name(config: &Config) -> &'static str {
    if config.cookies.secure {
        HOST_LOGIN_CSRF_COOKIE
    } else {
        LOGIN_CSRF_COOKIE
    }
}

/// A `__Host-` cookie must have `Path=/`; the plain one stays with the auth endpoints.
fn form_cookie_path(config: &Config) -> &str {
    if config.cookies.secure || config.auth_prefix.is_empty() {
        "/"
    } else {
        &config.auth_prefix
    }
}

fn clear_form_cookie(config: &Config) -> String {
    form_cookies(config).clear(
        form_cookie_name(config),
        form_cookie_path(config),
        Script::Hidden,
    )
}

/// `303 See Other` to `location`, a path on this host.
fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page: the frame (or the configured template) around `content`, with the headers that keep
/// it out of frames and caches and let it load nothing from anywhere.
fn html(config: &Config, title: &str, content: &str, status: StatusCode) -> Response<Body> {
    let frame = config.login_page.template.as_deref().unwrap_or(FRAME);
    let text = frame
        .replace("{{title}}", &escape(title))
        .replace("{{product}}", &escape(&config.login_page.product))
        .replace("{{content}}", content);
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Text made safe inside HTML elements and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_or_attribute_breakout() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
