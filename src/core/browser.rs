//! What a browser needs decided: whether a request comes from one (it asks for a page), and where
//! it may be sent after signing in (never off-site).

use http::HeaderMap;
use http::header::ACCEPT;

/// The longest `next` kept; a longer one goes to `/`.
const MAX_NEXT: usize = 2048;

/// Whether the request's `Accept` prefers a page to JSON: `text/html` (or `text/*`) named with a
/// weight above zero and at least that of `application/json` (or `application/*`, or `*/*`).
/// A browser's navigation says so; `fetch()`'s default `*/*` and API clients do not.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let (mut html, mut json) = (0.0f32, 0.0f32);
    let ranges = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "text/html" | "text/*" => html = html.max(weight),
            "application/json" | "application/*" | "*/*" => json = json.max(weight),
            _ => {}
        }
    }
    html > 0.0 && html >= json
}

/// Where to send a browser after it signs in: `next` if it is a path on this host, else `/`.
/// Refused: anything not starting with one `/` (`//evil.example`, `https://…`), a backslash
/// anywhere (browsers read `/\evil.example` as `//evil.example`), and anything but visible ASCII
/// (browsers drop tabs and newlines, so `/\t/evil.example` would be `//evil.example` too; a
/// browser sends other characters percent-encoded, and those stay encoded here).
pub fn safe_next(next: &str) -> &str {
    let bytes = next.as_bytes();
    let on_this_host = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/'))
        && next.len() <= MAX_NEXT
        && bytes.iter().all(|&b| b.is_ascii_graphic() && b != b'\\');
    if on_this_host { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(value: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        prefers_html(&h)
    }

    #[test]
    fn a_browser_navigation_prefers_a_page_and_an_api_client_does_not() {
        // Chromium's and Firefox's navigations.
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        ));
        assert!(accept("text/html"));
        assert!(!accept("*/*"), "fetch()'s default");
        assert!(!accept("application/json"));
        assert!(!accept("application/json, text/html;q=0.5"));
        assert!(!accept("text/html;q=0"));
        assert!(accept("text/*"));
        assert!(!prefers_html(&HeaderMap::new()), "no Accept: an API client");
    }

    #[test]
    fn next_stays_on_this_host_or_goes_home() {
        for kept in [
            "/",
            "/app/page?x=1&y=2#top",
            "/%2F%2Fevil.example",
            "/a/./b",
        ] {
            assert_eq!(safe_next(kept), kept);
        }
        for refused in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/a\\b",
            "https://evil.example/",
            "http:/evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/ /evil.example",
            "/caf\u{e9}",
            "/\u{ff0f}evil.example",
            " /app",
        ] {
            assert_eq!(safe_next(refused), "/", "{refused:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(5000))), "/");
    }
}
