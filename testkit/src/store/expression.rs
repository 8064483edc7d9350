//! Aggregation expressions (`"$a.b"`, `{$add: [...]}`, `{$cond: ...}`, literals) as used by
//! `$project`, `$addFields`, `$group` keys and accumulators, `$expr` and computed find
//! projections. A missing value is `None`, distinct from `null`, as in mongod.

mod numeric;
mod operators;

use bson::{Bson, Document};

use super::CommandError;

/// Checks an expression's operators without evaluating it, so a bad pipeline fails even when
/// no document reaches it.
///
/// # Errors
/// `InvalidPipelineOperator` (168) for an unknown `$operator`, `Location15983` for an operator
/// object with extra fields.
pub(crate) fn check(expr: &Bson) -> Result<(), CommandError> {
    match expr {
        Bson::Array(items) => items.iter().try_for_each(check),
        Bson::Document(d) => match operator_of(d)? {
            Some(("$literal", _)) => Ok(()),
            Some((op, arg)) => {
                operators::check_name(op)?;
                check(arg)
            }
            None => d.values().try_for_each(check),
        },
        Bson::String(s) if s.starts_with("$$") => variable_name_ok(s),
        _ => Ok(()),
    }
}

fn variable_name_ok(s: &str) -> Result<(), CommandError> {
    let name = s
        .trim_start_matches("$$")
        .split('.')
        .next()
        .unwrap_or_default();
    match name {
        "ROOT" | "CURRENT" | "REMOVE" | "NOW" => Ok(()),
        other => Err(CommandError::location(
            17276,
            format!("Use of undefined variable: {other}"),
        )),
    }
}

/// `Some((op, argument))` if `d` is an operator expression.
fn operator_of(d: &Document) -> Result<Option<(&str, &Bson)>, CommandError> {
    let mut keys = d.iter();
    match keys.next() {
        Some((k, v)) if k.starts_with('$') => {
            if d.len() > 1 {
                return Err(CommandError::location(
                    15983,
                    format!(
                        "an expression specification must contain exactly one field, the name \
                         of the expression. Found {} fields in {}, while parsing object {}",
                        d.len(),
                        super::render::document(d),
                        super::render::document(d)
                    ),
                ));
            }
            Ok(Some((k.as_str(), v)))
        }
        _ => {
            if let Some(k) = d.keys().find(|k| k.starts_with('$')) {
                return Err(CommandError::location(
                    16410,
                    format!("FieldPath field names may not start with '$'. Given: {k}"),
                ));
            }
            Ok(None)
        }
    }
}

/// Evaluates `expr` against `doc`; `Ok(None)` means the result is missing.
///
/// # Errors
/// The type errors mongod raises (e.g. `$add` of a string).
pub(crate) fn evaluate(expr: &Bson, doc: &Document) -> Result<Option<Bson>, CommandError> {
    match expr {
        Bson::String(s) if s.starts_with("$$") => variable(s, doc),
        Bson::String(s) if s.starts_with('$') => Ok(field_path(doc, &s[1..])),
        Bson::Array(items) => {
            let values = items
                .iter()
                .map(|item| Ok(evaluate(item, doc)?.unwrap_or(Bson::Null)))
                .collect::<Result<Vec<_>, CommandError>>()?;
            Ok(Some(Bson::Array(values)))
        }
        Bson::Document(d) => match operator_of(d)? {
            Some((op, arg)) => operators::apply(op, arg, doc),
            None => {
                let mut out = Document::new();
                for (k, v) in d {
                    if let Some(value) = evaluate(v, doc)? {
                        out.insert(k.clone(), value);
                    }
                }
                Ok(Some(Bson::Document(out)))
            }
        },
        literal => Ok(Some(literal.clone())),
    }
}

fn variable(s: &str, doc: &Document) -> Result<Option<Bson>, CommandError> {
    variable_name_ok(s)?;
    let mut parts = s[2..].splitn(2, '.');
    let name = parts.next().unwrap_or_default();
    let rest = parts.next();
    match (name, rest) {
        ("REMOVE", _) => Ok(None),
        ("NOW", _) => Ok(Some(Bson::DateTime(bson::DateTime::now()))),
        (_, None) => Ok(Some(Bson::Document(doc.clone()))),
        (_, Some(path)) => Ok(field_path(doc, path)),
    }
}

/// A field path with aggregation semantics: through an array, the path is applied to each
/// element and the results collected into an array.
pub(crate) fn field_path(doc: &Document, path: &str) -> Option<Bson> {
    let parts: Vec<&str> = path.split('.').collect();
    let (head, rest) = parts.split_first()?;
    descend(doc.get(*head)?, rest)
}

fn descend(value: &Bson, rest: &[&str]) -> Option<Bson> {
    let Some((head, tail)) = rest.split_first() else {
        return Some(value.clone());
    };
    match value {
        Bson::Document(d) => descend(d.get(*head)?, tail),
        Bson::Array(items) => Some(Bson::Array(
            items
                .iter()
                .filter_map(|item| match item {
                    Bson::Document(d) => d.get(*head).and_then(|v| descend(v, tail)),
                    Bson::Array(_) => descend(item, rest),
                    _ => None,
                })
                .collect(),
        )),
        _ => None,
    }
}

/// Aggregation truthiness: false, null, missing, undefined and zero are false.
pub(crate) fn truthy(value: Option<&Bson>) -> bool {
    match value {
        None | Some(Bson::Null | Bson::Undefined | Bson::Boolean(false)) => false,
        Some(Bson::Int32(0) | Bson::Int64(0)) => false,
        Some(Bson::Double(f)) => *f != 0.0,
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn eval(expr: Bson, doc: &Document) -> Option<Bson> {
        evaluate(&expr, doc).unwrap()
    }

    #[test]
    fn field_paths_collect_through_arrays() {
        let d = doc! {"a": [{"b": 1}, {"c": 2}, {"b": 3}], "x": {"y": 5}};
        assert_eq!(
            eval("$a.b".into(), &d),
            Some(Bson::Array(vec![1.into(), 3.into()]))
        );
        assert_eq!(eval("$x.y".into(), &d), Some(Bson::Int32(5)));
        assert_eq!(eval("$missing".into(), &d), None);
        assert_eq!(eval("$$ROOT.x.y".into(), &d), Some(Bson::Int32(5)));
    }

    #[test]
    fn arithmetic_and_comparison_operators_evaluate() {
        let d = doc! {"a": 2, "b": 3.5, "s": "Hi"};
        assert_eq!(
            eval(doc! {"$add": ["$a", "$b", 1]}.into(), &d),
            Some(Bson::Double(6.5))
        );
        assert_eq!(
            eval(doc! {"$multiply": ["$a", 4]}.into(), &d),
            Some(Bson::Int32(8))
        );
        assert_eq!(
            eval(doc! {"$subtract": ["$a", 5]}.into(), &d),
            Some(Bson::Int32(-3))
        );
        assert_eq!(
            eval(doc! {"$divide": ["$a", 4]}.into(), &d),
            Some(Bson::Double(0.5))
        );
        assert_eq!(
            eval(doc! {"$gt": ["$b", "$a"]}.into(), &d),
            Some(Bson::Boolean(true))
        );
        assert_eq!(
            eval(doc! {"$eq": ["$nope", null]}.into(), &d),
            Some(Bson::Boolean(false))
        );
        assert_eq!(
            eval(doc! {"$add": ["$a", null]}.into(), &d),
            Some(Bson::Null)
        );
        assert_eq!(
            eval(doc! {"$toUpper": "$s"}.into(), &d),
            Some(Bson::String("HI".into()))
        );
        assert_eq!(
            eval(doc! {"$concat": ["$s", "!"]}.into(), &d),
            Some(Bson::String("Hi!".into()))
        );
    }

    #[test]
    fn conditional_operators_evaluate() {
        let d = doc! {"a": 2};
        let cond = doc! {"$cond": {"if": {"$gte": ["$a", 2]}, "then": "big", "else": "small"}};
        assert_eq!(eval(cond.into(), &d), Some(Bson::String("big".into())));
        let cond = doc! {"$cond": [false, 1, 0]};
        assert_eq!(eval(cond.into(), &d), Some(Bson::Int32(0)));
        assert_eq!(
            eval(doc! {"$ifNull": ["$x", "dflt"]}.into(), &d),
            Some("dflt".into())
        );
        assert_eq!(eval(doc! {"$literal": "$a"}.into(), &d), Some("$a".into()));
    }

    #[test]
    fn array_operators_evaluate() {
        let d = doc! {"t": [1, 2, 3]};
        assert_eq!(eval(doc! {"$size": "$t"}.into(), &d), Some(Bson::Int32(3)));
        assert_eq!(
            eval(doc! {"$arrayElemAt": ["$t", -1]}.into(), &d),
            Some(Bson::Int32(3))
        );
        assert_eq!(
            eval(doc! {"$in": [2, "$t"]}.into(), &d),
            Some(Bson::Boolean(true))
        );
        assert_eq!(eval(doc! {"$sum": "$t"}.into(), &d), Some(Bson::Int32(6)));
        assert_eq!(eval(doc! {"$max": "$t"}.into(), &d), Some(Bson::Int32(3)));
    }

    #[test]
    fn unknown_operator_is_invalid_pipeline_operator() {
        let err = check(&doc! {"$bogus": 1}.into()).unwrap_err();
        assert_eq!(
            (err.code, err.code_name.as_str()),
            (168, "InvalidPipelineOperator")
        );
        assert_eq!(err.errmsg, "Unrecognized expression '$bogus'");
    }

    #[test]
    fn add_of_a_string_is_a_type_mismatch() {
        let err = evaluate(&doc! {"$add": [1, "x"]}.into(), &doc! {}).unwrap_err();
        assert_eq!(err.code, 14);
    }
}
