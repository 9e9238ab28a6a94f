//! The page that lets a person choose a provider, when several OpenID Connect providers are
//! enabled for the application and the login names none (`idp_hint`): a plain, accessible
//! HTML page (a heading, a list of links, each with the provider's `buttonText`), no script,
//! every text escaped.

use uuid::Uuid;

/// One provider's button: its text and where it leads.
pub struct Choice {
    /// `buttonText` (the application's override, else the provider's).
    pub text: String,
    /// The provider.
    pub provider: Uuid,
}

/// The page for `choices`; each link is `login_path` with the request's query plus
/// `idp_hint`. `query` is the original query string, without `?` and without `idp_hint`.
pub fn render(login_path: &str, query: &str, choices: &[Choice]) -> String {
    let mut items = String::new();
    for choice in choices {
        let separator = if query.is_empty() { "" } else { "&" };
        let href = format!(
            "{login_path}?{query}{separator}idp_hint={}",
            choice.provider
        );
        items.push_str(&format!(
            "    <li><a class=\"idp\" href=\"{}\">{}</a></li>\n",
            escape(&href),
            escape(&choice.text)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n  \
         <title>Log in</title>\n</head>\n<body>\n<main>\n  <h1>Log in</h1>\n  \
         <nav aria-label=\"Identity providers\">\n  <ul>\n{items}  </ul>\n  </nav>\n</main>\n\
         </body>\n</html>\n"
    )
}

/// `text` safe in HTML text and in a double-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_each_provider_escaped() {
        let a = Uuid::new_v4();
        let page = render(
            "/app/login/x",
            "redirect_uri=%2F",
            &[
                Choice {
                    text: "Corporate <SSO>".into(),
                    provider: a,
                },
                Choice {
                    text: "\"Other\" & co".into(),
                    provider: Uuid::new_v4(),
                },
            ],
        );
        assert!(page.contains("Corporate &lt;SSO&gt;"));
        assert!(page.contains("&quot;Other&quot; &amp; co"));
        assert!(page.contains(&format!(
            "href=\"/app/login/x?redirect_uri=%2F&amp;idp_hint={a}\""
        )));
        assert!(page.contains("<html lang=\"en\">") && !page.contains("<script"));
    }
}
