//! The expression operators atlas-sim evaluates, with mongod's null propagation and errors.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::numeric::{add, binary_numeric, divide, fold_numbers};
use super::{evaluate, truthy};
use crate::store::CommandError;
use crate::store::arith;
use crate::store::compare::{Number, compare, equal, type_name};

const NAMES: &[&str] = &[
    "$literal",
    "$add",
    "$subtract",
    "$multiply",
    "$divide",
    "$mod",
    "$abs",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$cmp",
    "$and",
    "$or",
    "$not",
    "$cond",
    "$ifNull",
    "$concat",
    "$toUpper",
    "$toLower",
    "$size",
    "$arrayElemAt",
    "$in",
    "$isArray",
    "$type",
    "$sum",
    "$avg",
    "$min",
    "$max",
    "$first",
    "$last",
    "$concatArrays",
    "$mergeObjects",
];

/// # Errors
/// `InvalidPipelineOperator` (168) if `op` is not an expression atlas-sim knows.
pub(super) fn check_name(op: &str) -> Result<(), CommandError> {
    if NAMES.contains(&op) {
        Ok(())
    } else {
        Err(CommandError::new(
            168,
            "InvalidPipelineOperator",
            format!("Unrecognized expression '{op}'"),
        ))
    }
}

pub(super) type Value = Option<Bson>;

fn operands(arg: &Bson, doc: &Document) -> Result<Vec<Value>, CommandError> {
    match arg {
        Bson::Array(items) => items.iter().map(|item| evaluate(item, doc)).collect(),
        single => Ok(vec![evaluate(single, doc)?]),
    }
}

fn arity<const N: usize>(op: &str, values: Vec<Value>) -> Result<[Value; N], CommandError> {
    let passed = values.len();
    values.try_into().map_err(|_| {
        CommandError::location(
            16020,
            format!("Expression {op} takes exactly {N} arguments. {passed} were passed in."),
        )
    })
}

pub(super) fn is_nullish(value: &Value) -> bool {
    matches!(value, None | Some(Bson::Null | Bson::Undefined))
}

pub(super) fn type_of(value: &Value) -> &'static str {
    value.as_ref().map_or("missing", type_name)
}

/// Applies `op` to its unevaluated argument.
///
/// # Errors
/// Type and arity errors as mongod raises them.
pub(super) fn apply(op: &str, arg: &Bson, doc: &Document) -> Result<Value, CommandError> {
    check_name(op)?;
    match op {
        "$literal" => return Ok(Some(arg.clone())),
        "$cond" => return cond(arg, doc),
        _ => {}
    }
    let values = operands(arg, doc)?;
    match op {
        "$add" => add(values),
        "$subtract" => {
            let [a, b] = arity::<2>(op, values)?;
            binary_numeric(a, b, arith::subtract, |a, b| {
                CommandError::type_mismatch(format!("can't $subtract {b} from {a}"))
            })
        }
        "$multiply" => values.into_iter().try_fold(Some(Bson::Int32(1)), |acc, v| {
            binary_numeric(acc, v, arith::multiply, |_, b| {
                CommandError::location(
                    16555,
                    format!("$multiply only supports numeric types, not {b}"),
                )
            })
        }),
        "$divide" => divide(arity::<2>(op, values)?),
        "$mod" => {
            let [a, b] = arity::<2>(op, values)?;
            if b.as_ref()
                .and_then(Number::of)
                .is_some_and(|n| n.as_f64() == 0.0)
            {
                return Err(CommandError::location(16610, "can't $mod by zero"));
            }
            binary_numeric(a, b, arith::remainder, |a, b| {
                CommandError::location(
                    16611,
                    format!("$mod only supports numeric types, not {a} and {b}"),
                )
            })
        }
        "$abs" => match arity::<1>(op, values)? {
            [v] if is_nullish(&v) => Ok(Some(Bson::Null)),
            [Some(Bson::Int32(i))] => Ok(Some(
                i.checked_abs()
                    .map_or(Bson::Int64(i64::from(i).abs()), Bson::Int32),
            )),
            [Some(Bson::Int64(i))] => Ok(Some(
                i.checked_abs()
                    .map_or(Bson::Double((i as f64).abs()), Bson::Int64),
            )),
            [v] => match v.as_ref().and_then(Number::of) {
                Some(n) => Ok(Some(Bson::Double(n.as_f64().abs()))),
                None => Err(CommandError::location(
                    28765,
                    format!("$abs only supports numeric types, not {}", type_of(&v)),
                )),
            },
        },
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$cmp" => {
            let [a, b] = arity::<2>(op, values)?;
            let order = compare(&a.unwrap_or(Bson::Undefined), &b.unwrap_or(Bson::Undefined));
            let result = match op {
                "$eq" => order == Ordering::Equal,
                "$ne" => order != Ordering::Equal,
                "$gt" => order == Ordering::Greater,
                "$gte" => order != Ordering::Less,
                "$lt" => order == Ordering::Less,
                "$lte" => order != Ordering::Greater,
                _ => return Ok(Some(Bson::Int32(order as i32))),
            };
            Ok(Some(Bson::Boolean(result)))
        }
        "$and" => Ok(Some(Bson::Boolean(
            values.iter().all(|v| truthy(v.as_ref())),
        ))),
        "$or" => Ok(Some(Bson::Boolean(
            values.iter().any(|v| truthy(v.as_ref())),
        ))),
        "$not" => {
            let [v] = arity::<1>(op, values)?;
            Ok(Some(Bson::Boolean(!truthy(v.as_ref()))))
        }
        "$ifNull" => {
            let last = values.len().saturating_sub(1);
            let found = values.iter().take(last).find(|v| !is_nullish(v)).cloned();
            Ok(found.unwrap_or_else(|| values.get(last).cloned().flatten()))
        }
        "$concat" => concat(values),
        "$toUpper" | "$toLower" => {
            let [v] = arity::<1>(op, values)?;
            let text = match v {
                None | Some(Bson::Null | Bson::Undefined) => String::new(),
                Some(Bson::String(s)) => s,
                Some(other) => crate::store::render::value(&other),
            };
            let out = if op == "$toUpper" {
                text.to_uppercase()
            } else {
                text.to_lowercase()
            };
            Ok(Some(Bson::String(out)))
        }
        "$size" => match arity::<1>(op, values)? {
            [Some(Bson::Array(items))] => Ok(Some(len_bson(items.len()))),
            [v] => Err(CommandError::location(
                17124,
                format!(
                    "The argument to $size must be an array. Type of argument: {}",
                    type_of(&v)
                ),
            )),
        },
        "$arrayElemAt" => array_elem_at(arity::<2>(op, values)?),
        "$in" => match arity::<2>(op, values)? {
            [x, Some(Bson::Array(items))] => {
                let x = x.unwrap_or(Bson::Undefined);
                Ok(Some(Bson::Boolean(items.iter().any(|i| equal(i, &x)))))
            }
            [_, v] => Err(CommandError::location(
                40081,
                format!(
                    "$in requires an array as a second argument, found: {}",
                    type_of(&v)
                ),
            )),
        },
        "$isArray" => {
            let [v] = arity::<1>(op, values)?;
            Ok(Some(Bson::Boolean(matches!(v, Some(Bson::Array(_))))))
        }
        "$type" => {
            let [v] = arity::<1>(op, values)?;
            Ok(Some(Bson::String(type_of(&v).to_owned())))
        }
        "$sum" | "$avg" | "$min" | "$max" => Ok(Some(fold_numbers(op, spread(arg, values)))),
        "$first" | "$last" => match arity::<1>(op, values)? {
            [v] if is_nullish(&v) => Ok(Some(Bson::Null)),
            [Some(Bson::Array(items))] => Ok(if op == "$first" {
                items.first()
            } else {
                items.last()
            }
            .cloned()),
            [v] => Err(CommandError::location(
                28689,
                format!("{op}'s argument must be an array, but is {}", type_of(&v)),
            )),
        },
        "$concatArrays" => {
            let mut out = Vec::new();
            for v in values {
                match v {
                    v if is_nullish(&v) => return Ok(Some(Bson::Null)),
                    Some(Bson::Array(items)) => out.extend(items),
                    v => {
                        return Err(CommandError::location(
                            28664,
                            format!("$concatArrays only supports arrays, not {}", type_of(&v)),
                        ));
                    }
                }
            }
            Ok(Some(Bson::Array(out)))
        }
        "$mergeObjects" => {
            let mut out = Document::new();
            for v in spread(arg, values) {
                match v {
                    Bson::Document(d) => out.extend(d),
                    Bson::Null | Bson::Undefined => {}
                    other => {
                        return Err(CommandError::location(
                            40400,
                            format!(
                                "$mergeObjects requires object inputs, but input {} is of type {}",
                                crate::store::render::value(&other),
                                type_name(&other)
                            ),
                        ));
                    }
                }
            }
            Ok(Some(Bson::Document(out)))
        }
        _ => Err(CommandError::new(
            168,
            "InvalidPipelineOperator",
            format!("Unrecognized expression '{op}'"),
        )),
    }
}

/// One array operand spreads into its elements (`{$sum: "$arr"}`); several stay as they are.
fn spread(arg: &Bson, values: Vec<Value>) -> Vec<Bson> {
    let single = !matches!(arg, Bson::Array(_));
    match values.as_slice() {
        [Some(Bson::Array(items))] if single => items.clone(),
        _ => values.into_iter().flatten().collect(),
    }
}

pub(crate) fn len_bson(len: usize) -> Bson {
    i32::try_from(len).map_or(Bson::Int64(len as i64), Bson::Int32)
}

fn concat(values: Vec<Value>) -> Result<Value, CommandError> {
    let mut out = String::new();
    for value in values {
        match value {
            v if is_nullish(&v) => return Ok(Some(Bson::Null)),
            Some(Bson::String(s)) => out.push_str(&s),
            v => {
                return Err(CommandError::location(
                    16702,
                    format!("$concat only supports strings, not {}", type_of(&v)),
                ));
            }
        }
    }
    Ok(Some(Bson::String(out)))
}

fn array_elem_at([array, index]: [Value; 2]) -> Result<Value, CommandError> {
    if is_nullish(&array) || is_nullish(&index) {
        return Ok(Some(Bson::Null));
    }
    let Some(Bson::Array(items)) = array else {
        return Err(CommandError::location(
            28689,
            format!(
                "$arrayElemAt's first argument must be an array, but is {}",
                type_of(&array)
            ),
        ));
    };
    let Some(Number::Int(i)) = index.as_ref().and_then(Number::of) else {
        return Err(CommandError::location(
            28690,
            format!(
                "$arrayElemAt's second argument must be a numeric value, but is {}",
                type_of(&index)
            ),
        ));
    };
    let len = items.len() as i64;
    let at = if i < 0 { len + i } else { i };
    Ok(usize::try_from(at)
        .ok()
        .and_then(|at| items.get(at))
        .cloned())
}

fn cond(arg: &Bson, doc: &Document) -> Result<Value, CommandError> {
    let (test, then, otherwise) = match arg {
        Bson::Array(items) if items.len() == 3 => (&items[0], &items[1], &items[2]),
        Bson::Document(d) => match (d.get("if"), d.get("then"), d.get("else")) {
            (Some(i), Some(t), Some(e)) => (i, t, e),
            _ => {
                return Err(CommandError::location(
                    17080,
                    "Missing 'if' parameter to $cond",
                ));
            }
        },
        _ => {
            return Err(CommandError::location(
                16020,
                "Expression $cond takes exactly 3 arguments.",
            ));
        }
    };
    if truthy(evaluate(test, doc)?.as_ref()) {
        evaluate(then, doc)
    } else {
        evaluate(otherwise, doc)
    }
}
