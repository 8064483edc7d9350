//! Query filters (`find`'s `filter`, `update`'s `q`, `$match`, ...): parsed once into a tree,
//! with mongod's errors for malformed operators, then matched against documents with mongod's
//! semantics: implicit equality, array-contains, dotted paths through arrays of
//! sub-documents, `null` matching missing fields, and range operators that only compare
//! values of the same type bracket.

mod operators;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::CommandError;
use super::compare::{Number, canonical_rank, compare, equal, type_number};
use super::expression;
use super::path::query_values;
use super::regex::Regex as Pattern;
use operators::{bson_regex, is_operator_doc, parse_operators};

/// A parsed query filter; all clauses must match.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Clone, Debug)]
enum Clause {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    Expr(Bson),
    Field { path: String, matcher: ValueMatcher },
}

/// The operators applied to one field (`{$gt: 1, $lt: 5}` or an implicit equality).
#[derive(Clone, Debug, Default)]
pub(crate) struct ValueMatcher {
    preds: Vec<Pred>,
}

#[derive(Clone, Debug)]
enum Pred {
    Eq(Bson),
    Ne(Bson),
    Cmp(Ordering, bool, Bson),
    In(Vec<Pred>),
    Nin(Vec<Pred>),
    Exists(bool),
    Not(Vec<Pred>),
    Regex(Pattern),
    Size(usize),
    All(Vec<Pred>),
    ElemMatchValue(Vec<Pred>),
    ElemMatchDoc(Filter),
    DocMatches(Filter),
    Type(Vec<TypeSel>),
    Mod(i64, i64),
}

#[derive(Clone, Copy, Debug)]
enum TypeSel {
    Number,
    Code(i32),
}

impl Filter {
    /// Parses a filter document.
    ///
    /// # Errors
    /// `BadValue` (2) for unknown or malformed operators, as mongod.
    pub(crate) fn parse(doc: &Document) -> Result<Self, CommandError> {
        let mut clauses = Vec::new();
        for (key, value) in doc {
            let clause = match key.as_str() {
                "$and" => Clause::And(parse_list(key, value)?),
                "$or" => Clause::Or(parse_list(key, value)?),
                "$nor" => Clause::Nor(parse_list(key, value)?),
                "$expr" => {
                    expression::check(value)?;
                    Clause::Expr(value.clone())
                }
                "$comment" => continue,
                "$text" => {
                    return Err(CommandError::new(
                        27,
                        "IndexNotFound",
                        "text index required for $text query",
                    ));
                }
                op if op.starts_with('$') => {
                    return Err(CommandError::bad_value(format!(
                        "unknown top level operator: {op}. If you have a field name that starts \
                         with a '$' symbol, consider using $getField or $setField."
                    )));
                }
                path => Clause::Field {
                    path: path.to_owned(),
                    matcher: ValueMatcher::parse(value)?,
                },
            };
            clauses.push(clause);
        }
        Ok(Self { clauses })
    }

    /// True if `doc` satisfies every clause.
    pub(crate) fn matches(&self, doc: &Document) -> bool {
        self.clauses.iter().all(|clause| match clause {
            Clause::And(filters) => filters.iter().all(|f| f.matches(doc)),
            Clause::Or(filters) => filters.iter().any(|f| f.matches(doc)),
            Clause::Nor(filters) => !filters.iter().any(|f| f.matches(doc)),
            Clause::Expr(expr) => {
                expression::evaluate(expr, doc).is_ok_and(|v| expression::truthy(v.as_ref()))
            }
            Clause::Field { path, matcher } => matcher.matches_values(&query_values(doc, path)),
        })
    }
}

fn parse_list(op: &str, value: &Bson) -> Result<Vec<Filter>, CommandError> {
    let Bson::Array(items) = value else {
        return Err(CommandError::bad_value(format!("{op} must be an array")));
    };
    if items.is_empty() {
        return Err(CommandError::bad_value(
            "$and/$or/$nor must be a nonempty array",
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Bson::Document(d) => Filter::parse(d),
            _ => Err(CommandError::bad_value(
                "$or/$and/$nor entries need to be full objects",
            )),
        })
        .collect()
}

impl ValueMatcher {
    /// Parses the value side of `{field: value}`: an operator document, a regex, or a value
    /// for equality.
    ///
    /// # Errors
    /// `BadValue` (2) for unknown or malformed operators.
    pub(crate) fn parse(value: &Bson) -> Result<Self, CommandError> {
        if let Some(pred) = bson_regex(value) {
            return Ok(Self { preds: vec![pred?] });
        }
        match is_operator_doc(value) {
            Some(ops) => Ok(Self {
                preds: parse_operators(ops)?,
            }),
            None => Ok(Self {
                preds: vec![Pred::Eq(value.clone())],
            }),
        }
    }

    /// Parses a `$pull` condition: a query on element documents, operators on element
    /// values, or a value for equality.
    ///
    /// # Errors
    /// As [`ValueMatcher::parse`].
    pub(crate) fn parse_pull(value: &Bson) -> Result<Self, CommandError> {
        match value {
            Bson::Document(d) if is_operator_doc(value).is_none() && !d.is_empty() => Ok(Self {
                preds: vec![Pred::DocMatches(Filter::parse(d)?)],
            }),
            other => Self::parse(other),
        }
    }

    /// Matches a single value, as `$pull` and `$elemMatch` apply conditions to elements.
    pub(crate) fn matches_value(&self, value: &Bson) -> bool {
        self.matches_values(&[Some(value)])
    }

    fn matches_values(&self, values: &[Option<&Bson>]) -> bool {
        self.preds.iter().all(|pred| pred.matches(values))
    }
}

/// `value` and, if it is an array, each of its elements.
fn value_and_elements(value: &Bson) -> impl Iterator<Item = &Bson> {
    let elements: &[Bson] = match value {
        Bson::Array(items) => items,
        _ => &[],
    };
    std::iter::once(value).chain(elements)
}

impl Pred {
    fn matches(&self, values: &[Option<&Bson>]) -> bool {
        let present = || values.iter().flatten().copied();
        match self {
            Self::Eq(x) => values.iter().any(|v| eq_one(x, *v)),
            Self::Ne(x) => !values.iter().any(|v| eq_one(x, *v)),
            Self::Cmp(dir, inclusive, x) => values.iter().any(|v| cmp_one(*dir, *inclusive, x, *v)),
            Self::In(items) => items.iter().any(|p| p.matches(values)),
            Self::Nin(items) => !items.iter().any(|p| p.matches(values)),
            Self::Exists(want) => values.iter().any(Option::is_some) == *want,
            Self::Not(preds) => !preds.iter().all(|p| p.matches(values)),
            Self::Regex(re) => present().flat_map(value_and_elements).any(|v| match v {
                Bson::String(s) | Bson::Symbol(s) => re.is_match(s),
                _ => false,
            }),
            Self::Size(n) => present().any(|v| matches!(v, Bson::Array(a) if a.len() == *n)),
            Self::All(preds) => !preds.is_empty() && preds.iter().all(|p| p.matches(values)),
            Self::ElemMatchValue(preds) => present().any(|v| match v {
                Bson::Array(items) => items
                    .iter()
                    .any(|e| preds.iter().all(|p| p.matches(&[Some(e)]))),
                _ => false,
            }),
            Self::ElemMatchDoc(filter) => present().any(|v| match v {
                Bson::Array(items) => items.iter().any(|e| match e {
                    Bson::Document(d) => filter.matches(d),
                    _ => false,
                }),
                _ => false,
            }),
            Self::DocMatches(filter) => present().any(|v| match v {
                Bson::Document(d) => filter.matches(d),
                _ => false,
            }),
            Self::Type(sels) => present()
                .flat_map(value_and_elements)
                .any(|e| sels.iter().any(|s| type_matches(*s, e))),
            Self::Mod(divisor, remainder) => present()
                .flat_map(value_and_elements)
                .filter_map(Number::of)
                .any(|n| (n.as_f64().trunc() as i64) % divisor == *remainder),
        }
    }
}

fn type_matches(sel: TypeSel, value: &Bson) -> bool {
    match sel {
        TypeSel::Number => Number::of(value).is_some(),
        TypeSel::Code(code) => type_number(value) == code,
    }
}

fn eq_one(x: &Bson, value: Option<&Bson>) -> bool {
    match value {
        None => matches!(x, Bson::Null),
        Some(v) => value_and_elements(v).any(|e| equal(e, x)),
    }
}

fn cmp_one(dir: Ordering, inclusive: bool, x: &Bson, value: Option<&Bson>) -> bool {
    let Some(v) = value else {
        return inclusive && matches!(x, Bson::Null);
    };
    let direct = |e: &Bson| {
        let comparable =
            matches!(x, Bson::MinKey | Bson::MaxKey) || canonical_rank(e) == canonical_rank(x);
        let order = compare(e, x);
        comparable && (order == dir || (inclusive && order == Ordering::Equal))
    };
    value_and_elements(v).any(direct)
}
