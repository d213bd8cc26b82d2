//! The HTML report.

use crate::report::Report;

/// Renders the report.
pub fn render(report: &Report) -> String {
    format!("<html><body><pre>{}</pre></body></html>", report.to_text())
}
