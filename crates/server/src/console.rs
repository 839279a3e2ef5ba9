//! The web console: static HTML, CSS and JavaScript (ES modules) compiled into the binary
//! with `include_str!`, served at `/` (the page) and `/console/...` (its assets).
//!
//! Why static files and no templates: every page is drawn in the browser from the public
//! API's JSON, signed there with WebCrypto exactly as the CLI signs (see `console/js/api.js`),
//! so the console needs no endpoint of its own and no server-side session: it is just
//! another API client. There is no npm on the build machines, so the files are written
//! by hand as plain ES modules; embedding keeps self-hosting one binary.
//!
//! Every response carries a strict Content-Security-Policy: scripts and styles from this
//! origin only (no inline code, no `eval`), API calls to this origin only, no frames, no
//! third-party origin at all. Assets are served `no-cache` (revalidated each load) so an
//! upgraded server never runs with a stale script.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy every console response carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../console/index.html");
const STYLE: &str = include_str!("../console/style.css");

/// The ES modules, by file name under `/console/js/`.
const SCRIPTS: &[(&str, &str)] = &[
    ("api.js", include_str!("../console/js/api.js")),
    ("app.js", include_str!("../console/js/app.js")),
    ("billing.js", include_str!("../console/js/billing.js")),
    ("job.js", include_str!("../console/js/job.js")),
    ("jobs.js", include_str!("../console/js/jobs.js")),
    ("keys.js", include_str!("../console/js/keys.js")),
    ("newjob.js", include_str!("../console/js/newjob.js")),
    ("nodes.js", include_str!("../console/js/nodes.js")),
    ("offers.js", include_str!("../console/js/offers.js")),
    ("recipes.js", include_str!("../console/js/recipes.js")),
    ("ui.js", include_str!("../console/js/ui.js")),
];

/// The console's routes, merged into the application router before its fallback.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/console/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/console/js/{file}", get(script))
}

/// Paths the metrics label requests by (the route templates above).
pub const ROUTE_TEMPLATES: [&str; 3] = ["/", "/console/style.css", "/console/js/{file}"];

async fn script(Path(file): Path<String>) -> Response {
    match SCRIPTS.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => asset("text/javascript; charset=utf-8", body),
        None => {
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "no such console file\n").into_response()
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module the page imports is served, and nothing served is unused.
    #[test]
    fn every_imported_module_is_served() {
        let mut imported: Vec<&str> = vec!["app.js"];
        for (_, body) in SCRIPTS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let name = line.rsplit("\"./").next().and_then(|t| t.split('"').next()).expect("import path");
                imported.push(name);
            }
        }
        for name in &imported {
            assert!(SCRIPTS.iter().any(|(n, _)| n == name), "{name} is imported but not served");
        }
        for (name, _) in SCRIPTS {
            assert!(imported.contains(name), "{name} is served but never imported");
        }
        assert!(INDEX.contains("/console/js/app.js") && INDEX.contains("/console/style.css"));
    }

    /// The page needs no inline script or style, which the policy forbids.
    #[test]
    fn no_inline_code() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style=") && !INDEX.contains("<style"));
        for (name, body) in SCRIPTS {
            let code = body.lines().filter(|l| !l.trim_start().starts_with("//") && !l.trim_start().starts_with('*'));
            for line in code {
                let bad =
                    ["innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "setAttribute(\"style"];
                assert!(!bad.iter().any(|b| line.contains(b)), "{name} builds code or markup from strings: {line}");
            }
        }
    }
}
