//! Proto comments to `#[doc]` attributes, escaped the way prost-build escapes message docs.

use proc_macro2::TokenStream;
use prost_build::Comments;
use quote::quote;

/// The leading and trailing comments of a proto item, as lines.
pub(crate) fn comment_lines(comments: &Comments) -> Vec<String> {
    let mut lines: Vec<String> = comments.leading.clone();
    if !lines.is_empty() && !comments.trailing.is_empty() {
        lines.push(String::new());
    }
    lines.extend(comments.trailing.iter().cloned());
    // Blank lines at either end add nothing but blank doc lines.
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let start = lines
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(lines.len());
    lines.drain(..start);
    lines
}

/// What an item whose docs start with `comment` (a proto comment) needs to pass
/// `clippy::pedantic`: a proto comment is the proto author's prose, copied as it is, and
/// names RPCs and messages without the backticks `clippy::doc_markdown` wants. Nothing when
/// there is no comment, so the generator's own text is still checked.
pub(crate) fn allow_for_comments(comment: &[String]) -> Option<TokenStream> {
    (!comment.is_empty()).then(|| quote! { #[allow(clippy::doc_markdown)] })
}

/// `#[doc = "..."]` attributes for the given lines.
pub(crate) fn attributes<S: AsRef<str>>(lines: &[S]) -> TokenStream {
    let lines = lines.iter().map(|line| sanitize(line.as_ref()));
    quote! { #( #[doc = #lines] )* }
}

/// One doc line: bare URLs become `<autolinks>` (rustdoc warns on bare ones), and the line
/// starts with the one space `///` comments conventionally have.
pub(crate) fn sanitize(line: &str) -> String {
    let line = autolink(line);
    let mut chars = line.chars();
    let indent = chars
        .next()
        .is_some_and(|c| c != ' ' || chars.next() == Some(' '));
    if indent { format!(" {line}") } else { line }
}

fn autolink(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 4);
    let mut rest = line;
    while let Some(start) = find_url(rest) {
        let (before, from_url) = rest.split_at(start);
        let end = from_url
            .find(|c: char| c.is_whitespace() || c == ')' || c == '>')
            .unwrap_or(from_url.len());
        let (url, after) = from_url.split_at(end);
        out.push_str(before);
        if before.ends_with('<') {
            out.push_str(url);
        } else {
            out.push('<');
            out.push_str(url);
            out.push('>');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    match (text.find("http://"), text.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_get_one_leading_space() {
        assert_eq!(sanitize("Creates a book."), " Creates a book.");
        assert_eq!(sanitize(" Creates a book."), " Creates a book.");
        assert_eq!(sanitize("  - continued"), "   - continued");
        assert_eq!(sanitize(""), "");
    }

    #[test]
    fn bare_urls_become_autolinks() {
        assert_eq!(
            sanitize("See https://cloud.google.com/run for more."),
            " See <https://cloud.google.com/run> for more."
        );
        assert_eq!(sanitize("(http://a.b)"), " (<http://a.b>)");
        assert_eq!(sanitize("<https://a.b> stays"), " <https://a.b> stays");
    }

    #[test]
    fn leading_and_trailing_comments_are_joined_and_trimmed() {
        let comments = Comments {
            leading_detached: vec![vec!["detached".into()]],
            leading: vec!["".into(), " Leading.".into(), "".into()],
            trailing: vec![" Trailing.".into(), "".into()],
        };
        assert_eq!(
            comment_lines(&comments),
            vec![" Leading.", "", "", " Trailing."]
        );
    }
}
