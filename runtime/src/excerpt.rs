//! What an error message may quote of a body another party sent: its readable text, short,
//! on one line, and never a token. Used for every body we quote — Cloud Run's refusal pages,
//! token endpoints' error answers, a program's standard error.

/// How much of a body's text a message quotes.
const QUOTE_AT_MOST: usize = 200;

/// The readable text of a page (or of any body), short and on one line: HTML tags, scripts and
/// styles dropped, entities for `<>&"'` decoded, anything that looks like a JWT replaced, so a
/// page that echoes a token never carries it into an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut visible = String::with_capacity(text.len().min(4 * QUOTE_AT_MOST));
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            visible.push_str(rest);
            break;
        };
        visible.push_str(&rest[..open]);
        visible.push(' ');
        let tag = &rest[open..];
        let lower = tag.get(..8).unwrap_or(tag).to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            find_ignore_case(tag, "</script>").map(|end| end + "</script>".len())
        } else if lower.starts_with("<style") {
            find_ignore_case(tag, "</style>").map(|end| end + "</style>".len())
        } else {
            tag.find('>').map(|end| end + 1)
        };
        match skip_to {
            Some(end) => rest = &tag[end..],
            None => break,
        }
    }
    let decoded = visible
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let words: Vec<&str> = decoded
        .split_whitespace()
        .map(|word| {
            if looks_like_a_token(word) {
                "[token]"
            } else {
                word
            }
        })
        .collect();
    let mut line = words.join(" ");
    if line.chars().count() > QUOTE_AT_MOST {
        line = line.chars().take(QUOTE_AT_MOST).collect();
        line.push('…');
    }
    line
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

/// A JWT (three base64url parts, the first a JSON header: `eyJ…`) or a bearer credential
/// (an OAuth access token, `ya29.…`), wherever it sits in a word.
fn looks_like_a_token(word: &str) -> bool {
    word.contains("eyJ") && word.matches('.').count() >= 2 || word.contains("ya29.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_google_error_page_becomes_its_text() {
        let page = br#"<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>401 Unauthorized</title>
<style>body { color: red }</style><script>var x = "<b>";</script>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Unauthorized</h1>
<h2>Your client does not have permission to the requested URL <code>/acme.Bookstore/GetBook</code>.</h2>
<h2></h2>
</body></html>
"#;
        assert_eq!(
            excerpt(page),
            "401 Unauthorized Error: Unauthorized Your client does not have permission to the \
             requested URL /acme.Bookstore/GetBook ."
        );
    }

    #[test]
    fn tokens_never_make_it_into_an_excerpt() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl";
        let page = format!("<p>bad token:{jwt}</p> and Bearer ya29.a0AfH6SMB secret");
        let text = excerpt(page.as_bytes());
        assert!(!text.contains("eyJ") && !text.contains("ya29"), "{text}");
        assert!(text.contains("[token]"), "{text}");
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        let long = "word\n".repeat(500);
        let text = excerpt(long.as_bytes());
        assert!(text.chars().count() <= QUOTE_AT_MOST + 1);
        assert!(!text.contains('\n'));
        assert_eq!(excerpt(b"unclosed <tag"), "unclosed");
    }
}
