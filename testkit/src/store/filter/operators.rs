//! Parsing the operator side of a filter field (`{$gt: 1}`, `{$in: [...]}`, `$regex`,
//! `$elemMatch`, `$type`, ...) into predicates, failing with mongod's `BadValue` messages.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::{Filter, Pred, TypeSel};
use crate::store::CommandError;
use crate::store::compare::Number;
use crate::store::expression;
use crate::store::regex::Regex as Pattern;

pub(super) fn is_operator_doc(value: &Bson) -> Option<&Document> {
    match value {
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => Some(d),
        _ => None,
    }
}

fn compile_regex(pattern: &str, options: &str) -> Result<Pred, CommandError> {
    Pattern::new(pattern, options)
        .map(Pred::Regex)
        .map_err(|reason| {
            CommandError::location(51091, format!("Regular expression is invalid: {reason}"))
        })
}

pub(super) fn bson_regex(value: &Bson) -> Option<Result<Pred, CommandError>> {
    match value {
        Bson::RegularExpression(r) => Some(compile_regex(r.pattern.as_str(), r.options.as_str())),
        _ => None,
    }
}

pub(super) fn parse_operators(ops: &Document) -> Result<Vec<Pred>, CommandError> {
    let mut preds = Vec::new();
    let options = match ops.get("$options") {
        None => None,
        Some(Bson::String(s)) => Some(s.as_str()),
        Some(_) => return Err(CommandError::bad_value("$options has to be a string")),
    };
    if options.is_some() && !ops.contains_key("$regex") {
        return Err(CommandError::bad_value("$options needs a $regex"));
    }
    for (op, arg) in ops {
        let pred = match op.as_str() {
            "$eq" => Pred::Eq(arg.clone()),
            "$ne" => Pred::Ne(arg.clone()),
            "$gt" => Pred::Cmp(Ordering::Greater, false, arg.clone()),
            "$gte" => Pred::Cmp(Ordering::Greater, true, arg.clone()),
            "$lt" => Pred::Cmp(Ordering::Less, false, arg.clone()),
            "$lte" => Pred::Cmp(Ordering::Less, true, arg.clone()),
            "$in" => Pred::In(parse_in_list(op, arg)?),
            "$nin" => Pred::Nin(parse_in_list(op, arg)?),
            "$exists" => Pred::Exists(expression::truthy(Some(arg))),
            "$not" => Pred::Not(parse_not(arg)?),
            "$regex" => match arg {
                Bson::String(pattern) => compile_regex(pattern, options.unwrap_or(""))?,
                Bson::RegularExpression(r) => {
                    let opts = options.unwrap_or(r.options.as_str());
                    compile_regex(r.pattern.as_str(), opts)?
                }
                _ => return Err(CommandError::bad_value("$regex has to be a string")),
            },
            "$options" => continue,
            "$size" => Pred::Size(parse_size(arg)?),
            "$all" => Pred::All(parse_all(arg)?),
            "$elemMatch" => parse_elem_match(arg)?,
            "$type" => Pred::Type(parse_types(arg)?),
            "$mod" => parse_mod(arg)?,
            "$comment" => continue,
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {other}"
                )));
            }
        };
        preds.push(pred);
    }
    Ok(preds)
}

fn parse_in_list(op: &str, arg: &Bson) -> Result<Vec<Pred>, CommandError> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value(format!("{op} needs an array")));
    };
    items
        .iter()
        .map(|item| {
            if let Some(pred) = bson_regex(item) {
                return pred;
            }
            if is_operator_doc(item).is_some() {
                return Err(CommandError::bad_value(format!("cannot nest $ under {op}")));
            }
            Ok(Pred::Eq(item.clone()))
        })
        .collect()
}

fn parse_not(arg: &Bson) -> Result<Vec<Pred>, CommandError> {
    if let Some(pred) = bson_regex(arg) {
        return Ok(vec![pred?]);
    }
    match arg {
        Bson::Document(d) if d.is_empty() => Err(CommandError::bad_value("$not cannot be empty")),
        Bson::Document(d) => parse_operators(d),
        _ => Err(CommandError::bad_value("$not needs a regex or a document")),
    }
}

fn parse_size(arg: &Bson) -> Result<usize, CommandError> {
    let size = match Number::of(arg) {
        Some(Number::Int(i)) => i,
        Some(Number::Float(f)) if f.fract() == 0.0 => f as i64,
        Some(Number::Float(_)) => {
            return Err(CommandError::bad_value(format!(
                "Failed to parse $size. Expected an integer in: $size: {}",
                crate::store::render::value(arg)
            )));
        }
        None => return Err(CommandError::bad_value("$size needs a number")),
    };
    usize::try_from(size).map_err(|_| CommandError::bad_value("$size may not be negative"))
}

fn parse_all(arg: &Bson) -> Result<Vec<Pred>, CommandError> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value("$all needs an array"));
    };
    items
        .iter()
        .map(|item| {
            if let Some(pred) = bson_regex(item) {
                return pred;
            }
            match is_operator_doc(item) {
                Some(d) if d.contains_key("$elemMatch") => d
                    .get("$elemMatch")
                    .map_or(Ok(Pred::All(Vec::new())), parse_elem_match),
                Some(_) => Err(CommandError::bad_value("no $ expressions in $all")),
                None => Ok(Pred::Eq(item.clone())),
            }
        })
        .collect()
}

fn parse_elem_match(arg: &Bson) -> Result<Pred, CommandError> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::bad_value("$elemMatch needs an Object"));
    };
    let first = d.keys().next().map(String::as_str);
    match first {
        Some(k) if k.starts_with('$') && !matches!(k, "$and" | "$or" | "$nor" | "$expr") => {
            Ok(Pred::ElemMatchValue(parse_operators(d)?))
        }
        _ => Ok(Pred::ElemMatchDoc(Filter::parse(d)?)),
    }
}

fn parse_types(arg: &Bson) -> Result<Vec<TypeSel>, CommandError> {
    let one = |v: &Bson| -> Result<TypeSel, CommandError> {
        match v {
            Bson::String(alias) if alias == "number" => Ok(TypeSel::Number),
            Bson::String(alias) => type_code_of_alias(alias).map(TypeSel::Code).ok_or_else(|| {
                CommandError::bad_value(format!("Unknown type name alias: {alias}"))
            }),
            other => match Number::of(other) {
                Some(n) => {
                    let code = n.as_f64() as i32;
                    if (1..=19).contains(&code) || code == -1 || code == 127 {
                        Ok(TypeSel::Code(code))
                    } else {
                        Err(CommandError::bad_value(format!(
                            "Invalid numerical type code: {code}"
                        )))
                    }
                }
                None => Err(CommandError::type_mismatch(
                    "type must be represented as a number or a string",
                )),
            },
        }
    };
    match arg {
        Bson::Array(items) => items.iter().map(one).collect(),
        single => Ok(vec![one(single)?]),
    }
}

fn type_code_of_alias(alias: &str) -> Option<i32> {
    const ALIASES: [(&str, i32); 21] = [
        ("double", 1),
        ("string", 2),
        ("object", 3),
        ("array", 4),
        ("binData", 5),
        ("undefined", 6),
        ("objectId", 7),
        ("bool", 8),
        ("date", 9),
        ("null", 10),
        ("regex", 11),
        ("dbPointer", 12),
        ("javascript", 13),
        ("symbol", 14),
        ("javascriptWithScope", 15),
        ("int", 16),
        ("timestamp", 17),
        ("long", 18),
        ("decimal", 19),
        ("minKey", -1),
        ("maxKey", 127),
    ];
    ALIASES
        .iter()
        .find(|(name, _)| *name == alias)
        .map(|(_, code)| *code)
}

fn parse_mod(arg: &Bson) -> Result<Pred, CommandError> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value(
            "malformed mod, needs to be an array",
        ));
    };
    match items.as_slice() {
        [] | [_] => Err(CommandError::bad_value(
            "malformed mod, not enough elements",
        )),
        [d, r] => match (Number::of(d), Number::of(r)) {
            (Some(d), Some(r)) => {
                let divisor = d.as_f64() as i64;
                if divisor == 0 {
                    return Err(CommandError::bad_value("divisor cannot be 0"));
                }
                Ok(Pred::Mod(divisor, r.as_f64() as i64))
            }
            _ => Err(CommandError::bad_value(
                "malformed mod, divisor and remainder not numbers",
            )),
        },
        _ => Err(CommandError::bad_value("malformed mod, too many elements")),
    }
}
