//! Tests for the regular-expression matcher.

use super::Regex;

fn is_match(pattern: &str, options: &str, text: &str) -> bool {
    Regex::new(pattern, options).unwrap().is_match(text)
}

#[test]
fn regex_matches_anywhere_unless_anchored() {
    assert!(is_match("ell", "", "hello"));
    assert!(!is_match("^ell", "", "hello"));
    assert!(is_match("^he.*o$", "", "hello"));
    assert!(!is_match("^he$", "", "hello"));
}

#[test]
fn regex_supports_classes_groups_and_quantifiers() {
    assert!(is_match(r"^\d{3}-\d{4}$", "", "555-1234"));
    assert!(!is_match(r"^\d{3}-\d{4}$", "", "55-1234"));
    assert!(is_match("^(foo|bar)+$", "", "foobarfoo"));
    assert!(is_match("^[a-c]+[^0-9]?$", "", "abcx"));
    assert!(is_match(r"^a.+?b$", "", "aXXb"));
    assert!(is_match(r"\bword\b", "", "a word here"));
}

#[test]
fn regex_options_change_matching() {
    assert!(is_match("^HELLO", "i", "hello"));
    assert!(is_match("^two", "m", "one\ntwo"));
    assert!(!is_match("^two", "", "one\ntwo"));
    assert!(is_match("a.b", "s", "a\nb"));
}

#[test]
fn regex_rejects_unsupported_syntax() {
    assert!(Regex::new("(?=x)", "").is_err());
    assert!(Regex::new("(ab", "").is_err());
    assert!(Regex::new("*a", "").is_err());
}
