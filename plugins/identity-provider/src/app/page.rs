//! The page that lets a person choose a provider, when several OpenID Connect providers are
//! enabled for the application and the login names none (`idp_hint`): a plain, accessible
//! HTML page (a heading, a list of links, each with the provider's `buttonText` and, when it
//! has one, its `buttonImageURL` — or the application's overrides of them), no script, every
//! text escaped. The page's Content-Security-Policy lets in images from the origins of those
//! buttons only ([`image_sources`]).

use uuid::Uuid;

/// One provider's button: its text and where it leads.
pub struct Choice {
    /// `buttonText` (the application's override, else the provider's).
    pub text: String,
    /// `buttonImageURL` (the application's override, else the provider's), when there is one.
    /// Only an absolute http(s) URL is shown ([`image_url`]).
    pub image: Option<String>,
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
        let image = match choice.image.as_deref().and_then(image_url) {
            // Decorative: the text beside it names the provider.
            Some(url) => format!(
                "<img src=\"{}\" alt=\"\" height=\"24\"> ",
                escape(url.as_str())
            ),
            None => String::new(),
        };
        items.push_str(&format!(
            "    <li><a class=\"idp\" href=\"{}\">{image}{}</a></li>\n",
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

/// `image` as a URL the page may show: absolute, `http` or `https`, with a host; `None` for
/// anything else (validation refuses other URLs, this keeps the page safe whatever is stored).
fn image_url(image: &str) -> Option<url::Url> {
    let url = url::Url::parse(image.trim()).ok()?;
    let web = matches!(url.scheme(), "http" | "https");
    (web && url.host_str().is_some_and(|h| !h.is_empty())).then_some(url)
}

/// The `img-src` directive (with its trailing `"; "`) allowing the origins of the images of
/// `choices`, each once; empty when no choice has an image (`default-src 'none'` then
/// refuses every image).
pub fn image_sources(choices: &[Choice]) -> String {
    let mut origins: Vec<String> = Vec::new();
    for url in choices
        .iter()
        .filter_map(|c| c.image.as_deref().and_then(image_url))
    {
        let origin = url.origin().ascii_serialization();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    if origins.is_empty() {
        return String::new();
    }
    format!("img-src {}; ", origins.join(" "))
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
                    image: None,
                    provider: a,
                },
                Choice {
                    text: "\"Other\" & co".into(),
                    image: None,
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

    #[test]
    fn images_are_shown_from_web_urls_only_and_allowed_by_origin() {
        let choice = |image: Option<&str>| Choice {
            text: "SSO".into(),
            image: image.map(str::to_string),
            provider: Uuid::new_v4(),
        };
        let choices = [
            choice(Some("https://cdn.example/a.png?x=1&y=\"2\"")),
            choice(Some("https://cdn.example/b.svg")),
            choice(Some("http://other.example:8080/c.png")),
            choice(Some("javascript:alert(1)")),
            choice(Some("data:image/png;base64,AAAA")),
            choice(None),
        ];
        let page = render("/app/login/x", "", &choices);
        assert!(page.contains("<img src=\"https://cdn.example/a.png?x=1&amp;y=%222%22\" alt=\"\""));
        assert!(page.contains("<img src=\"http://other.example:8080/c.png\""));
        assert!(!page.contains("javascript:") && !page.contains("data:"));
        assert_eq!(page.matches("<img ").count(), 3);
        assert_eq!(
            image_sources(&choices),
            "img-src https://cdn.example http://other.example:8080; "
        );
        assert_eq!(
            image_sources(&[choice(None), choice(Some("ftp://x/y"))]),
            ""
        );
    }
}
