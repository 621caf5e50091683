//! Reading the module paths a source file names: comments and literals blanked out, the text
//! cut into tokens, `use` trees and `crate::`/`super::`/`self::` paths collected with their lines.

use std::collections::BTreeSet;

/// One module path a file names, as written (`crate::a::B`, `super::x`), with its line and how
/// many inline modules (`mod tests { .. }`) enclose it.
#[derive(Debug)]
pub(super) struct Reference {
    pub(super) line: usize,
    pub(super) path: Vec<String>,
    pub(super) inline_depth: usize,
}

/// The source with comments, string and char literals blanked out (newlines kept, so that line
/// numbers stay right).
pub(super) fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let ident = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && !ident(
                i.checked_sub(1)
                    .and_then(|p| chars.get(p))
                    .filter(|p| **p != 'b'),
            )
            && matches!(next, Some('"') | Some('#'))
            && {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                chars.get(i + 1 + hashes) == Some(&'"')
            }
        {
            // A raw string: r"..", r#".."#, br"..".
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            i += hashes + 2;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#') {
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if let Some(c) = chars.get(i) {
                    blank(&mut out, *c);
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{1F600}'); a lifetime has no closing quote.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[derive(Debug)]
pub(super) struct Token {
    text: String,
    pub(super) line: usize,
}

/// Identifiers (numbers too), `::`, and every other character as a token of its own.
pub(super) fn tokens(stripped: &str) -> Vec<Token> {
    let chars: Vec<char> = stripped.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        } else if c.is_whitespace() {
            i += 1;
            continue;
        } else if c.is_alphanumeric() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            i += 1;
        }
        out.push(Token {
            text: chars[start..i].iter().collect(),
            line,
        });
    }
    out
}

/// Whether the token is an identifier (a keyword too).
pub(super) fn is_ident(token: Option<&Token>) -> bool {
    token.is_some_and(|t| t.text.starts_with(|c: char| c.is_alphabetic() || c == '_'))
}

pub(super) fn is(token: Option<&Token>, text: &str) -> bool {
    token.is_some_and(|t| t.text == text)
}

/// Parses the use tree at `i`, adding every path it names to `out`; the index after it.
pub(super) fn use_tree(
    toks: &[Token],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> Option<usize> {
    let mut path = prefix.to_vec();
    if is(toks.get(i), "::") {
        i += 1;
    }
    loop {
        let token = toks.get(i)?;
        match token.text.as_str() {
            "{" => {
                i += 1;
                while !is(toks.get(i), "}") {
                    i = use_tree(toks, i, &path, out)?;
                    if is(toks.get(i), ",") {
                        i += 1;
                    } else if !is(toks.get(i), "}") {
                        return None;
                    }
                }
                return Some(i + 1);
            }
            "*" => {
                out.push((path, token.line));
                return Some(i + 1);
            }
            _ if is_ident(Some(token)) => {
                // `self` in a group names the group's prefix.
                if token.text != "self" || path.is_empty() {
                    path.push(token.text.clone());
                }
                i += 1;
                if is(toks.get(i), "::") {
                    i += 1;
                    continue;
                }
                if is(toks.get(i), "as") {
                    i += 2;
                }
                out.push((path, token.line));
                return Some(i);
            }
            _ => return None,
        }
    }
}

/// The module paths a file names, and the modules it declares (`mod x;`).
pub(super) fn references(source: &str) -> (Vec<Reference>, BTreeSet<String>) {
    let toks = tokens(&strip(source));
    let children: BTreeSet<String> = toks
        .windows(3)
        .filter(|w| w[0].text == "mod" && is_ident(Some(&w[1])) && w[2].text == ";")
        .map(|w| w[1].text.clone())
        .collect();
    let mut refs = Vec::new();
    // One entry per open brace: whether it opens an inline module.
    let mut braces: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let depth = braces.iter().filter(|inline| **inline).count();
        let prev = i.checked_sub(1).and_then(|p| toks.get(p));
        let text = toks[i].text.as_str();
        if text == "{" {
            let inline = i >= 2 && toks[i - 2].text == "mod" && is_ident(Some(&toks[i - 1]));
            braces.push(inline);
        } else if text == "}" {
            braces.pop();
        } else if text == "use" && !is(prev, "::") && !is(prev, ".") {
            let mut paths = Vec::new();
            if let Some(end) = use_tree(&toks, i + 1, &[], &mut paths) {
                refs.extend(paths.into_iter().map(|(path, line)| Reference {
                    line,
                    path,
                    inline_depth: depth,
                }));
                i = end;
                continue;
            }
        } else if (matches!(text, "crate" | "super" | "self") || children.contains(text))
            && !is(prev, "::")
            && !is(prev, ".")
            && is(toks.get(i + 1), "::")
        {
            let line = toks[i].line;
            let mut path = vec![text.to_string()];
            i += 1;
            while is(toks.get(i), "::") && is_ident(toks.get(i + 1)) {
                path.push(toks[i + 1].text.clone());
                i += 2;
            }
            refs.push(Reference {
                line,
                path,
                inline_depth: depth,
            });
            continue;
        }
        i += 1;
    }
    (refs, children)
}
