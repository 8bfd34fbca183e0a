//! The tokens of one statement, with comments and whitespace set aside.
//!
//! The parts of classification that must look at every corner of a statement
//! (function calls, locking clauses) or at statements sqlparser cannot parse
//! work on tokens rather than on the AST.

use sqlparser::tokenizer::{Token, TokenWithSpan};

/// The tokens of one statement (no terminating semicolon), indexed by
/// significant token: whitespace and comments are skipped by every accessor
/// except [`StatementTokens::text_from`].
pub(super) struct StatementTokens<'a> {
    raw: &'a [TokenWithSpan],
    significant: Vec<usize>,
}

impl<'a> StatementTokens<'a> {
    /// Index the significant tokens of `raw`.
    pub(super) fn new(raw: &'a [TokenWithSpan]) -> Self {
        let significant = raw
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
            .map(|(i, _)| i)
            .collect();
        Self { raw, significant }
    }

    /// Number of significant tokens.
    pub(super) fn len(&self) -> usize {
        self.significant.len()
    }

    /// The `i`-th significant token.
    pub(super) fn get(&self, i: usize) -> Option<&'a Token> {
        let raw = *self.significant.get(i)?;
        self.raw.get(raw).map(|t| &t.token)
    }

    /// Whether the `i`-th significant token is the unquoted word `word`
    /// (ASCII case-insensitive). Quoted identifiers never match: `"to"` is a
    /// name, not the keyword `TO`.
    pub(super) fn is_word(&self, i: usize, word: &str) -> bool {
        matches!(self.get(i), Some(Token::Word(w))
            if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    /// Whether the significant tokens from `i` on start with the unquoted
    /// words `words`.
    pub(super) fn are_words(&self, i: usize, words: &[&str]) -> bool {
        words
            .iter()
            .enumerate()
            .all(|(k, word)| self.is_word(i + k, word))
    }

    /// Whether the `i`-th significant token is one of the unquoted `words`.
    pub(super) fn is_any_word(&self, i: usize, words: &[&str]) -> bool {
        words.iter().any(|word| self.is_word(i, word))
    }

    /// The lower-cased text of the `i`-th significant token when it is a word
    /// (quoted or not).
    pub(super) fn word_text(&self, i: usize) -> Option<String> {
        match self.get(i) {
            Some(Token::Word(w)) => Some(w.value.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The first index `>= from` whose significant token satisfies `matches`.
    pub(super) fn position_from(
        &self,
        from: usize,
        matches: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        (from..self.len()).find(|&i| matches(i))
    }

    /// The source text from the `i`-th significant token to the end of the
    /// statement, as the tokenizer saw it (escapes untouched), with each run
    /// of whitespace and comments inside it collapsed to one space so that an
    /// inner `--` comment cannot swallow the rest when the text is re-issued.
    /// Empty when there is no `i`-th token.
    pub(super) fn text_from(&self, i: usize) -> String {
        let (Some(&first), Some(&last)) = (self.significant.get(i), self.significant.last()) else {
            return String::new();
        };
        let mut text = String::new();
        let mut pending_space = false;
        for token in self.raw.get(first..=last).unwrap_or_default() {
            if matches!(token.token, Token::Whitespace(_)) {
                pending_space = true;
                continue;
            }
            if pending_space {
                text.push(' ');
                pending_space = false;
            }
            text.push_str(&source_text(&token.token));
        }
        text
    }
}

/// A token as SQL text. The tokenizer decodes `E'…'` and `U&'…'` literals
/// even when asked not to unescape, so those are written back as an `E'…'`
/// literal with the same value.
fn source_text(token: &Token) -> String {
    match token {
        Token::EscapedStringLiteral(value) | Token::UnicodeStringLiteral(value) => {
            let mut literal = String::from("E'");
            for c in value.chars() {
                if c == '\\' || c == '\'' {
                    literal.push('\\');
                }
                literal.push(c);
            }
            literal.push('\'');
            literal
        }
        other => other.to_string(),
    }
}

/// Whether the statement has a row-locking clause anywhere: `FOR UPDATE`,
/// `FOR NO KEY UPDATE`, `FOR SHARE` or `FOR KEY SHARE`. PostgreSQL allows
/// these in any sub-select and CTE, and locking rows needs the primary.
/// A column that happens to be called `share` (`substring(x FOR share)`) is a
/// false positive, which only sends the statement to the primary.
pub(super) fn has_locking_clause(tokens: &StatementTokens<'_>) -> bool {
    const LOCKS: &[&[&str]] = &[
        &["update"],
        &["share"],
        &["no", "key", "update"],
        &["key", "share"],
    ];
    tokens
        .position_from(0, |i| {
            tokens.is_word(i, "for") && LOCKS.iter().any(|lock| tokens.are_words(i + 1, lock))
        })
        .is_some()
}
