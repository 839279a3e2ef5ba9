//! A small W3C WebDriver client (over the reqwest the harness already uses) driving Debian's
//! `chromium` through `chromedriver`, for the web console's browser tests.
//!
//! Why not fantoccini or thirtyfour: the tests need a dozen commands (session, navigate,
//! find, click, type, run a script, screenshot), which are one JSON POST each; a client crate
//! would bring a second HTTP and TLS stack into the build for them.
//!
//! [`Browser::start`] returns `None` when chromium or chromedriver is missing, so the tests
//! skip locally with a message; CI sets `GANTRY_REQUIRE_CHROMIUM=1`, which turns that into a
//! failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session and the chromedriver process behind it.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
}

/// An element reference from [`Browser::find`].
#[derive(Clone, Debug)]
pub struct Element(String);

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// Starts chromedriver on a port it picks; returns it and the port. `--port=0` is racy
/// (chromedriver picks a port, then binds it: two starting at once may collide and the loser
/// exits with "port not available"), so a start that prints no port is retried.
async fn start_driver(chromedriver: &str) -> (Child, u16) {
    let mut said = Vec::new();
    for _ in 0..10 {
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = driver.stdout.take().expect("piped stdout");
        // "ChromeDriver was started successfully on port 42661."
        let (port, seen) = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            let port = lines.by_ref().map_while(Result::ok).find_map(|l| {
                let port = l
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').trim().parse().ok());
                seen.push(l);
                port
            });
            // Keep draining so chromedriver never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            (port, seen)
        })
        .await
        .expect("reader");
        if let Some(port) = port {
            return (driver, port);
        }
        let _ = driver.kill();
        let _ = driver.wait();
        said = seen;
    }
    panic!("chromedriver printed no port in 10 starts; last said: {said:?}");
}

impl Browser {
    /// Starts chromedriver on an ephemeral port and a headless Chromium session with a
    /// 1280×800 window; `None` (after saying why) when either is not installed, unless
    /// `GANTRY_REQUIRE_CHROMIUM=1`.
    pub async fn start() -> Option<Self> {
        let chromium = program("GANTRY_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("GANTRY_CHROMEDRIVER", "/usr/bin/chromedriver");
        let missing: Vec<&str> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|p| !std::path::Path::new(p).exists())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            assert!(
                std::env::var("GANTRY_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
                "GANTRY_REQUIRE_CHROMIUM=1 but {missing:?} not found (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipping the browser test: {missing:?} not found (apt-get install chromium chromium-driver)");
            return None;
        }
        let (driver, port) = start_driver(&chromedriver).await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,800", "--no-first-run", "--disable-extensions"]}
        }}});
        let base = format!("http://127.0.0.1:{port}");
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let id = resp["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {resp}")).to_owned();
        Some(Self { driver, http, session: format!("{base}/session/{id}") })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|(err, message)| panic!("webdriver {path}: {err}: {message}"))
    }

    /// The command's value, or the WebDriver error code and message it answered.
    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.expect("webdriver request").json().await.expect("webdriver json");
        match resp["value"].get("error") {
            Some(err) => Err((err.as_str().unwrap_or_default().to_owned(), resp["value"]["message"].clone())),
            None => Ok(resp["value"].clone()),
        }
    }

    /// Sends `steps` (path after `/element/{id}`, body) to the element matching `css`,
    /// finding it again if the page redrew it in between: a page that re-renders on
    /// events (the job page does when its run changes) can replace the element after
    /// it was found, which WebDriver answers with "stale element reference".
    async fn on_element(&self, css: &str, steps: &[(&str, Value)]) {
        let what = format!("the element matching {css} to take {} command(s)", steps.len());
        crate::wait_for(&what, Duration::from_secs(20), || async {
            let el = self.try_find(css).await?;
            for (step, body) in steps {
                let path = format!("/element/{}/{step}", el.0);
                match self.try_cmd(reqwest::Method::POST, &path, Some(body.clone())).await {
                    Ok(_) => {}
                    Err((err, _)) if err == "stale element reference" => return None,
                    Err((err, message)) => panic!("webdriver {path}: {err}: {message}"),
                }
            }
            Some(())
        })
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Runs `script` as an async function body (it may `await`; `arguments` holds `args`) and
    /// returns what it resolves to.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        let wrapped = format!(
            "const done = arguments[arguments.length - 1]; \
             (async (...arguments) => {{ {script} }})(...Array.from(arguments).slice(0, -1)).then(done, (e) => done({{error: String(e)}}));"
        );
        self.post("/execute/async", json!({ "script": wrapped, "args": args })).await
    }

    /// The first element matching `css`, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let found = self.post("/elements", json!({"using": "css selector", "value": css})).await;
        found.as_array()?.first().map(|e| Element(e[ELEMENT].as_str().expect("element id").to_owned()))
    }

    /// The first element matching `css`, waiting up to 20 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        crate::wait_for(&format!("an element matching {css}"), Duration::from_secs(20), || self.try_find(css)).await
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.on_element(css, &[("click", json!({}))]).await;
    }

    /// Replaces the value of the input matching `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, &[("clear", json!({})), ("value", json!({ "text": text }))]).await;
    }

    /// Types `text` into the element matching `css` (WebDriver key codes allowed: `\u{E004}` Tab,
    /// `\u{E007}` Enter).
    pub async fn keys(&self, css: &str, text: &str) {
        self.on_element(css, &[("value", json!({ "text": text }))]).await;
    }

    /// Sets a `<select>`'s value and fires `change`, as choosing an option does.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css).await;
        let script = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                      s.dispatchEvent(new Event('change', {bubbles: true})); return s.value;";
        assert_eq!(self.execute(script, json!([css, value])).await, json!(value), "{css} has an option {value}");
    }

    /// The visible text of the first element matching `css` ("" when none).
    pub async fn text(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';";
        self.execute(script, json!([css])).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` contains `needle`; returns that text.
    pub async fn wait_text(&self, css: &str, needle: &str, deadline: Duration) -> String {
        crate::wait_for(&format!("{css} to contain {needle:?}"), deadline, || async {
            let text = self.text(css).await;
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Accepts a `confirm()` dialog.
    pub async fn accept_dialog(&self) {
        crate::wait_for("a dialog", Duration::from_secs(10), || async {
            let resp: Value = self
                .http
                .post(format!("{}/alert/accept", self.session))
                .json(&json!({}))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            resp["value"].get("error").is_none().then_some(())
        })
        .await;
    }

    /// Resizes the window so that the page's viewport is `width`×`height` CSS pixels (the
    /// window's outer size includes its frame, even headless).
    pub async fn set_viewport(&self, width: i64, height: i64) {
        self.post("/window/rect", json!({ "width": width, "height": height })).await;
        let inner = self.execute("return [window.innerWidth, window.innerHeight];", json!([])).await;
        let (w, h) = (inner[0].as_i64().unwrap_or(width), inner[1].as_i64().unwrap_or(height));
        if (w, h) != (width, height) {
            let rect = json!({ "width": 2 * width - w, "height": 2 * height - h });
            self.post("/window/rect", rect).await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("base64")).expect("png")
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test must not leave chromedriver (and its Chromium) behind.
        let _ = self.driver.kill();
    }
}
