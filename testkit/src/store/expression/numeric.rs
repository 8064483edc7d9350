//! The numeric expression operators (`$add`, `$subtract`, `$multiply`, `$divide`, `$mod`,
//! `$sum`/`$avg`/`$min`/`$max` over arrays) with mongod's null propagation and type errors.

use bson::Bson;

use super::operators::{Value, is_nullish, type_of};
use crate::store::CommandError;
use crate::store::arith;
use crate::store::compare::{Number, compare, type_name};

pub(super) fn fold_numbers(op: &str, values: Vec<Bson>) -> Bson {
    match op {
        "$sum" => values
            .iter()
            .fold(arith::zero(), |acc, v| arith::add(&acc, v).unwrap_or(acc)),
        "$avg" => {
            let numbers: Vec<f64> = values
                .iter()
                .filter_map(Number::of)
                .map(Number::as_f64)
                .collect();
            if numbers.is_empty() {
                Bson::Null
            } else {
                Bson::Double(numbers.iter().sum::<f64>() / numbers.len() as f64)
            }
        }
        _ => {
            let present = values
                .into_iter()
                .filter(|v| !matches!(v, Bson::Null | Bson::Undefined));
            let best = if op == "$min" {
                present.min_by(compare)
            } else {
                present.max_by(compare)
            };
            best.unwrap_or(Bson::Null)
        }
    }
}

pub(super) fn binary_numeric(
    a: Value,
    b: Value,
    op: fn(&Bson, &Bson) -> Option<Bson>,
    error: impl Fn(&str, &str) -> CommandError,
) -> Result<Value, CommandError> {
    if is_nullish(&a) || is_nullish(&b) {
        return Ok(Some(Bson::Null));
    }
    match (a, b) {
        (Some(x), Some(y)) => match op(&x, &y) {
            Some(r) => Ok(Some(r)),
            None => Err(error(type_name(&x), type_name(&y))),
        },
        _ => Ok(Some(Bson::Null)),
    }
}

pub(super) fn add(values: Vec<Value>) -> Result<Value, CommandError> {
    if values.iter().any(is_nullish) {
        return Ok(Some(Bson::Null));
    }
    let mut total = arith::zero();
    let mut date: Option<i64> = None;
    for value in values.into_iter().flatten() {
        if let Bson::DateTime(d) = value {
            if date.is_some() {
                return Err(CommandError::location(
                    16612,
                    "only one date allowed in an $add expression",
                ));
            }
            date = Some(d.timestamp_millis());
            continue;
        }
        total = arith::add(&total, &value).ok_or_else(|| {
            CommandError::type_mismatch(format!(
                "$add only supports numeric or date types, not {}",
                type_name(&value)
            ))
        })?;
    }
    Ok(Some(match date {
        Some(millis) => {
            let offset = Number::of(&total).map_or(0.0, Number::as_f64);
            Bson::DateTime(bson::DateTime::from_millis(millis + offset.round() as i64))
        }
        None => total,
    }))
}

pub(super) fn divide([a, b]: [Value; 2]) -> Result<Value, CommandError> {
    if is_nullish(&a) || is_nullish(&b) {
        return Ok(Some(Bson::Null));
    }
    let (x, y) = (
        a.as_ref().and_then(Number::of),
        b.as_ref().and_then(Number::of),
    );
    match (x, y) {
        (Some(_), Some(y)) if y.as_f64() == 0.0 => {
            Err(CommandError::location(16608, "can't $divide by zero"))
        }
        (Some(x), Some(y)) => Ok(Some(Bson::Double(x.as_f64() / y.as_f64()))),
        _ => Err(CommandError::location(
            16609,
            format!(
                "$divide only supports numeric types, not {} and {}",
                type_of(&a),
                type_of(&b)
            ),
        )),
    }
}
