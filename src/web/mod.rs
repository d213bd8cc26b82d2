//! Static web assets embedded in the binary, so the relay needs no files at run time: the
//! browser client library (`GET /client.js`, `GET /client.d.ts`, from `clients/js/dist/`) and
//! the live status page (`GET /status`, a self-contained HTML page that polls `/stats`).
//!
//! Owns: the asset bytes, their content types and cache headers. May not touch: routing (the
//! runtime decides which port serves what) or the figures the status page shows.

/// One embedded HTTP resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The response body.
    pub body: &'static [u8],
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// Extra response headers.
    pub headers: &'static [(&'static str, &'static str)],
}

/// Headers of the client files: loadable as a module script from any origin (a module
/// `import` across origins needs CORS), and revalidated so an upgraded relay serves its own.
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("Access-Control-Allow-Origin", "*"),
    ("Cache-Control", "no-cache"),
];

/// `GET /client.js`: the ES module of `clients/js` (its source is the shipped file).
pub const CLIENT_JS: Asset = Asset {
    body: include_bytes!("../../clients/js/dist/client.js"),
    content_type: "text/javascript; charset=utf-8",
    headers: CLIENT_HEADERS,
};

/// `GET /client.d.ts`: the TypeScript declarations of the client.
pub const CLIENT_DTS: Asset = Asset {
    body: include_bytes!("../../clients/js/dist/client.d.ts"),
    content_type: "text/plain; charset=utf-8",
    headers: CLIENT_HEADERS,
};

/// `GET /status`: the live status page (no external assets; polls `/stats` every second).
pub const STATUS_HTML: Asset = Asset {
    body: include_bytes!("status.html"),
    content_type: "text/html; charset=utf-8",
    headers: &[("Cache-Control", "no-cache")],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_the_committed_files() {
        assert!(CLIENT_JS.body.starts_with(b"// wsrelay browser and Node"));
        assert!(std::str::from_utf8(CLIENT_JS.body)
            .is_ok_and(|s| s.contains("export class RelayClient")));
        assert!(std::str::from_utf8(CLIENT_DTS.body)
            .is_ok_and(|s| s.contains("export declare class RelayClient")));
        assert!(STATUS_HTML.body.starts_with(b"<!doctype html>"));
        // Self-contained: no external scripts, styles or images.
        let html = std::str::from_utf8(STATUS_HTML.body).unwrap_or_default();
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains(" src="));
    }
}
