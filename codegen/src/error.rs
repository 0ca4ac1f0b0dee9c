//! The one error type `compile` returns, rendered for a human reading a failed build.

use std::fmt;
use std::path::PathBuf;

use miette::{Diagnostic, SourceCode, SourceSpan};

/// Why code generation failed.
///
/// `Display` (and `Debug`, which a `build.rs` returning `Result` prints) gives the file, the line
/// and the reason, e.g.
///
/// ```text
/// proto/broken.proto:4:3: expected ';', but found 'string'
///     4 |   string title = 2;
///       |   ^ found here
/// ```
pub struct Error {
    kind: Kind,
}

enum Kind {
    /// protox (or protoc) refused a `.proto` file; the message is already rendered.
    Proto(String),
    /// Reading or writing a file failed.
    Io {
        what: &'static str,
        path: Option<PathBuf>,
        source: std::io::Error,
    },
    /// The build was misconfigured, e.g. no `OUT_DIR`.
    Config(String),
    /// A service could not be wrapped (a name that is no Rust identifier), or our own generator
    /// produced code that does not parse.
    Codegen(String),
}

impl Error {
    pub(crate) fn io(what: &'static str, path: Option<PathBuf>, source: std::io::Error) -> Self {
        Self {
            kind: Kind::Io { what, path, source },
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Config(message.into()),
        }
    }

    pub(crate) fn codegen(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Codegen(message.into()),
        }
    }

    pub(crate) fn proto_text(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Proto(message.into()),
        }
    }

    /// A protox error, its file names resolved against `includes` so they point at the file.
    pub(crate) fn proto(error: &protox::Error, includes: &[PathBuf]) -> Self {
        Self::proto_text(render(error, includes))
    }

    /// True when a `.proto` file was rejected (syntax error, unknown type, missing import…).
    pub fn is_proto(&self) -> bool {
        matches!(self.kind, Kind::Proto(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Proto(rendered) => f.write_str(rendered),
            Kind::Io {
                what,
                path: Some(path),
                source,
            } => write!(f, "{what} `{}`: {source}", path.display()),
            Kind::Io {
                what,
                path: None,
                source,
            } => write!(f, "{what}: {source}"),
            Kind::Config(message) => f.write_str(message),
            Kind::Codegen(message) => {
                write!(f, "cannot generate the Cloud Run wrappers: {message}")
            }
        }
    }
}

/// `build.rs` files return `Result<(), Box<dyn Error>>`, and Rust prints the error with `Debug`:
/// make that the readable form too.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Renders a protox diagnostic as `file:line:column: reason`, followed by the offending source
/// line with a caret under each labelled span, then any help and related diagnostics.
pub(crate) fn render(error: &protox::Error, includes: &[PathBuf]) -> String {
    let mut out = String::new();
    render_diagnostic(error, error.file(), None, includes, &mut out);
    out
}

/// `name` as protoc knows it (relative to an include path) turned into the path of the file,
/// so the message can be clicked; `name` itself when no include holds it.
fn locate(name: &str, includes: &[PathBuf]) -> String {
    includes
        .iter()
        .map(|include| include.join(name))
        .find(|path| path.is_file())
        .map_or_else(|| name.to_owned(), |path| path.display().to_string())
}

fn render_diagnostic(
    diagnostic: &dyn Diagnostic,
    file: Option<&str>,
    parent_source: Option<&dyn SourceCode>,
    includes: &[PathBuf],
    out: &mut String,
) {
    // Related diagnostics usually point into their parent's source.
    let source = diagnostic.source_code().or(parent_source);
    let labels: Vec<_> = diagnostic
        .labels()
        .map(Iterator::collect)
        .unwrap_or_default();
    let text = source.and_then(full_text);
    let name = source
        .and_then(|source| source.read_span(&SourceSpan::from(0..0), 0, 0).ok())
        .and_then(|contents| contents.name().map(str::to_owned))
        .or_else(|| file.map(str::to_owned))
        .map(|name| locate(&name, includes));

    let first = labels.first().map(|label| label.offset());
    let position = match (&text, first) {
        (Some(text), Some(offset)) => Some(line_column(text, offset)),
        _ => None,
    };
    match (&name, position) {
        (Some(name), Some((line, column))) => out.push_str(&format!("{name}:{line}:{column}: ")),
        (Some(name), None) => out.push_str(&format!("{name}: ")),
        (None, _) => {}
    }
    out.push_str(&diagnostic.to_string());

    if let Some(text) = &text {
        for label in &labels {
            let (line, column) = line_column(text, label.offset());
            let source_line = text.lines().nth(line - 1).unwrap_or_default();
            let gutter = line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad = " ".repeat(column - 1);
            let carets = "^".repeat(label.len().clamp(1, source_line.len().max(1)));
            out.push_str(&format!(
                "\n    {gutter} | {source_line}\n    {pad} | {caret_pad}{carets}"
            ));
            if let Some(label_text) = label.label() {
                out.push(' ');
                out.push_str(label_text);
            }
        }
    }
    if let Some(help) = diagnostic.help() {
        out.push_str(&format!("\n  help: {help}"));
    }
    if let Some(related) = diagnostic.related() {
        for related in related {
            out.push('\n');
            render_diagnostic(related, file, source, includes, out);
        }
    }
}

/// The whole source text behind a diagnostic, when it carries one.
fn full_text(source: &dyn SourceCode) -> Option<String> {
    let contents = source
        .read_span(&SourceSpan::from(0..0), 0, usize::MAX)
        .ok()?;
    Some(String::from_utf8_lossy(contents.data()).into_owned())
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_is_one_based() {
        let text = "ab\ncd\né f";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 6), (3, 1));
        // `é` is two bytes but one column.
        assert_eq!(line_column(text, 9), (3, 3));
        assert_eq!(line_column(text, 1000), (3, 4));
    }
}
