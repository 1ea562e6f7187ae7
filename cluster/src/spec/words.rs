//! Shell words, as docker splits `--args`, `--entrypoint` and `--health-cmd` (its `ShlexOpt`):
//! whitespace separates words; single quotes keep everything literally; double quotes keep
//! whitespace and take `\` before `"`, `\`, `$`, `` ` `` or a newline; outside quotes `\` keeps
//! the next character; `#` at the start of a word begins a comment. Nothing is expanded.

use super::SpecError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// The words of `input`, for the flag `flag` (named in errors).
pub fn split_words(flag: &str, input: &str) -> Result<Vec<String>, SpecError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word has begun (an empty quoted word `''` is still a word).
    let mut started = false;
    let mut quote = Quote::None;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Quote::None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (Quote::None, '#') if !started => {
                // A comment: the rest of the line.
                while chars.next_if(|&n| n != '\n').is_some() {}
            }
            (Quote::None, '\'') => (quote, started) = (Quote::Single, true),
            (Quote::None, '"') => (quote, started) = (Quote::Double, true),
            (Quote::None, '\\') => {
                started = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(n) => word.push(n),
                }
            }
            (Quote::Single, '\'') | (Quote::Double, '"') => quote = Quote::None,
            (Quote::Double, '\\') => match chars.peek() {
                Some(&n) if matches!(n, '"' | '\\' | '$' | '`' | '\n') => {
                    chars.next();
                    if n != '\n' {
                        word.push(n);
                    }
                }
                _ => word.push('\\'),
            },
            (_, c) => {
                started = true;
                word.push(c);
            }
        }
    }
    let unclosed = match quote {
        Quote::None => None,
        Quote::Single => Some("single"),
        Quote::Double => Some("double"),
    };
    if let Some(which) = unclosed {
        return Err(SpecError::new(format!(
            "invalid {flag} {input:?}: a {which} quote is not closed (words are split as a shell does: quote a word with spaces as 'a b' or \"a b\")"
        )));
    }
    if started {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<String> {
        split_words("--args", input).unwrap()
    }

    #[test]
    fn splits_as_a_shell_does() {
        for (input, want) in [
            ("", vec![]),
            ("   ", vec![]),
            ("httpd -f -p 80", vec!["httpd", "-f", "-p", "80"]),
            (
                "sh -c 'echo v2 > /index.html; httpd -f -p 80 -h /'",
                vec!["sh", "-c", "echo v2 > /index.html; httpd -f -p 80 -h /"],
            ),
            (r#"echo "a  b" c"#, vec!["echo", "a  b", "c"]),
            (
                r#"echo "say \"hi\" \$HOME \n""#,
                vec!["echo", r#"say "hi" $HOME \n"#],
            ),
            (r"echo a\ b \'x", vec!["echo", "a b", "'x"]),
            ("echo '' x", vec!["echo", "", "x"]),
            (r#"echo it"'"s x' 'y"#, vec!["echo", "it's", "x y"]),
            ("echo a#b # a comment", vec!["echo", "a#b"]),
            ("echo 'a\nb'\tc\nd", vec!["echo", "a\nb", "c", "d"]),
        ] {
            assert_eq!(words(input), want, "{input:?}");
        }
    }

    #[test]
    fn an_unclosed_quote_is_refused_naming_the_flag() {
        let e = split_words("--entrypoint", "sh -c 'echo").unwrap_err();
        assert!(
            e.0.contains("--entrypoint") && e.0.contains("single quote"),
            "{e}"
        );
        let e = split_words("--args", r#"echo "a"#).unwrap_err();
        assert!(e.0.contains("double quote"), "{e}");
    }
}
