//! The browser flow in a real browser: headless Chromium, driven through chromedriver (WebDriver),
//! in front of the echo app. Runs when `AUTHGATE_TEST_CHROMEDRIVER` names a chromedriver binary
//! (`.ci/run` installs Debian's `chromium` and `chromium-driver` and sets it); otherwise `build.rs`
//! marks it ignored, and `cargo test` lists it as such with the reason.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::*;

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary = std::env::var("AUTHGATE_TEST_CHROMEDRIVER").expect("set by .ci/run");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own, so that the browsers it starts go with it, even when a
        // failed assertion leaves no chance to close the session.
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        let mut chrome = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=900,760",
            ]
        });
        if let Ok(binary) = std::env::var("AUTHGATE_TEST_CHROMIUM") {
            chrome["binary"] = json!(binary);
        }
        capabilities.insert("goog:chromeOptions".into(), chrome);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of the group this driver leads; no memory is involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

async fn path_of(browser: &Client) -> String {
    let url = browser.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

async fn fill(browser: &Client, field: &str, text: &str) {
    let input = browser.find(Locator::Id(field)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

/// Clicks the form's button, and waits until the browser has gone where the answer sends it.
async fn submit(browser: &Client) {
    let button = browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    click_and_wait(browser, button).await;
}

/// Clicks `element` and waits (at most 10 s) for the page to change: a click returns before a
/// form's post and its `303` are done.
async fn click_and_wait(browser: &Client, element: fantoccini::elements::Element) {
    let before = browser.current_url().await.unwrap();
    element.click().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while browser.current_url().await.unwrap() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the click leads somewhere");
    tokio::time::timeout(Duration::from_secs(10), async {
        while browser
            .execute("return document.readyState", vec![])
            .await
            .unwrap()
            != "complete"
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the page loads");
}

/// `fetch()` from the page: the status of a POST to `path`, with `X-CSRF-TOKEN` copied from the
/// `csrf_access_token` cookie when `with_csrf`.
async fn post_from_page(browser: &Client, path: &str, with_csrf: bool) -> u64 {
    let script = r#"
        const [path, withCsrf] = arguments;
        const csrf = document.cookie.split('; ').find(c => c.startsWith('csrf_access_token='));
        const headers = withCsrf && csrf ? {'X-CSRF-TOKEN': csrf.split('=')[1]} : {};
        return fetch(path, {method: 'POST', headers, credentials: 'same-origin'}).then(r => r.status);
    "#;
    browser
        .execute(script, vec![json!(path), json!(with_csrf)])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_test_browser,
    ignore = "needs Chromium: apt-get install chromium chromium-driver, then set AUTHGATE_TEST_CHROMEDRIVER=/usr/bin/chromedriver"
)]
async fn a_browser_signs_up_signs_in_stays_in_and_signs_out() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &upstream.url(),
        &dir.path().join("authgate.db"),
        "[cookies]\nsecure = false\n[login_page]\nproduct = \"Example app\"\n",
    )
    .replace(
        "[tokens]\n",
        "[tokens]\nlocation = [\"headers\", \"cookies\"]\naccess_ttl = \"2s\"\n",
    )
    .replace("[server]\n", "[server]\nauth_prefix = \"/auth\"\n");
    let gate = Gate::start(&text).await;
    let base = format!("http://{}", gate.addr);
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // A protected page sends the browser to sign in, remembering where it was going.
    browser
        .goto(&format!("{base}/app/page?tab=2"))
        .await
        .unwrap();
    assert_eq!(
        path_of(&browser).await,
        "/auth/login?next=%2Fapp%2Fpage%3Ftab%3D2"
    );
    let screenshot = browser.screenshot().await.unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("login-page.png");
    std::fs::write(&shot, screenshot).unwrap();
    println!("the sign-in page: {}", shot.display());

    // Sign up through the form, then sign in through the other.
    let sign_up = browser.find(Locator::LinkText("Sign up")).await.unwrap();
    click_and_wait(&browser, sign_up).await;
    assert!(path_of(&browser).await.starts_with("/auth/register?next="));
    fill(&browser, "username", "ada").await;
    fill(&browser, "password", "a perfectly fine password").await;
    submit(&browser).await;
    assert!(
        browser.source().await.unwrap().contains("Account created"),
        "{}",
        path_of(&browser).await
    );
    fill(&browser, "username", "ada").await;
    fill(&browser, "password", "a perfectly fine password").await;
    submit(&browser).await;

    // At the page first asked for, with the app's answer and the identity headers.
    assert_eq!(path_of(&browser).await, "/app/page?tab=2");
    let page = browser.source().await.unwrap();
    assert!(
        page.contains("x-auth-username") && page.contains("ada"),
        "{page}"
    );

    // Past the access token's life: a reload is still signed in (silent refresh).
    tokio::time::sleep(Duration::from_millis(3200)).await;
    browser.refresh().await.unwrap();
    assert_eq!(path_of(&browser).await, "/app/page?tab=2");
    assert!(browser.source().await.unwrap().contains("x-auth-username"));

    // A script's POST without the CSRF header is refused and never forwarded; with it, it is.
    let before = upstream.seen().len();
    assert_eq!(post_from_page(&browser, "/api/items", false).await, 401);
    assert_eq!(upstream.seen().len(), before);
    assert_eq!(post_from_page(&browser, "/api/items", true).await, 200);
    assert_eq!(upstream.seen().last().unwrap().method, "POST");

    // Sign out; the protected page sends the browser to sign in again.
    browser.goto(&format!("{base}/auth/logout")).await.unwrap();
    assert!(browser.source().await.unwrap().contains("Signed in as"));
    submit(&browser).await;
    assert_eq!(path_of(&browser).await, "/auth/login");
    browser.goto(&format!("{base}/app/page")).await.unwrap();
    assert_eq!(path_of(&browser).await, "/auth/login?next=%2Fapp%2Fpage");

    browser.close().await.unwrap();
    gate.stop().await;
}
