//! Server-rendered HTML for the hosted signup page and its error pages. Every
//! interpolated value is escaped; the page's configuration travels as a JSON data
//! block that cannot close its script element.

use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// JSON safe to place inside `<script type="application/json">`.
pub fn script_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;background:#f4f6f5;color:#1c1e21}\
main{max-width:520px;margin:8vh auto;background:#fff;border-radius:14px;padding:32px;box-shadow:0 2px 12px rgba(0,0,0,.08)}\
h1{font-size:22px;margin:0 0 12px}\
button{font:inherit;border:0;border-radius:8px;padding:12px 20px;background:#0b57d0;color:#fff;cursor:pointer}\
button:disabled{opacity:.5;cursor:default}\
.secondary{background:#e4e6eb;color:#1c1e21}\
.sandbox{background:#fff4ce;border:1px solid #e0c45c;border-radius:8px;padding:8px 12px;font-size:14px}\
.notice{background:#e7f3ff;border:1px solid #0b57d0;border-radius:8px;padding:8px 12px;font-size:15px}\
.muted{color:#65676b;font-size:14px}";

/// The page shell: title, style and body. Signup links carry one-time tokens, so no page
/// of theirs is indexed; the empty icon spares browsers a `/favicon.ico` request that
/// would 404.
pub fn document(title: &str, body: &str, scripts: &str) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta name=\"robots\" content=\"noindex,nofollow\"><link rel=\"icon\" href=\"data:,\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}{scripts}</body></html>\n",
        escape(title)
    );
    out
}

/// An error page: what happened, and how to get a fresh link.
pub fn error_page(heading: &str, explanation: &str) -> String {
    let body = format!(
        "<main><h1 id=\"error-heading\">{}</h1><p>{}</p>\
         <p class=\"muted\">Signup links are single-use and expire. Ask the service that sent \
         you this link for a fresh one.</p></main>",
        escape(heading),
        escape(explanation)
    );
    document(heading, &body, "")
}
