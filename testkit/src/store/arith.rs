//! Arithmetic on BSON numbers with mongod's type promotion: int + int stays int unless it
//! overflows (then long), long overflow falls back to double, and any double (or decimal,
//! approximated as double here) makes the result a double. Used by `$inc`, `$mul`, `$sum`
//! and the arithmetic expressions.

use bson::Bson;

use super::compare::Number;

/// A binary arithmetic operation that yields `None` for non-numeric operands.
pub(crate) type BinaryOp = fn(&Bson, &Bson) -> Option<Bson>;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Width {
    Int32,
    Int64,
    Double,
}

fn width(value: &Bson) -> Option<Width> {
    match value {
        Bson::Int32(_) => Some(Width::Int32),
        Bson::Int64(_) => Some(Width::Int64),
        Bson::Double(_) | Bson::Decimal128(_) => Some(Width::Double),
        _ => None,
    }
}

fn combine(
    a: &Bson,
    b: &Bson,
    int_op: fn(i64, i64) -> Option<i64>,
    float_op: fn(f64, f64) -> f64,
) -> Option<Bson> {
    let kind = width(a)?.max(width(b)?);
    let (x, y) = (Number::of(a)?, Number::of(b)?);
    let as_float = || Bson::Double(float_op(x.as_f64(), y.as_f64()));
    match (kind, x, y) {
        (Width::Double, _, _) => Some(as_float()),
        (_, Number::Int(i), Number::Int(j)) => match int_op(i, j) {
            Some(r) if kind == Width::Int32 => {
                Some(i32::try_from(r).map_or(Bson::Int64(r), Bson::Int32))
            }
            Some(r) => Some(Bson::Int64(r)),
            None => Some(as_float()),
        },
        _ => Some(as_float()),
    }
}

/// `a + b`, or `None` if either is not a number.
pub(crate) fn add(a: &Bson, b: &Bson) -> Option<Bson> {
    combine(a, b, i64::checked_add, |x, y| x + y)
}

/// `a - b`, or `None` if either is not a number.
pub(crate) fn subtract(a: &Bson, b: &Bson) -> Option<Bson> {
    combine(a, b, i64::checked_sub, |x, y| x - y)
}

/// `a * b`, or `None` if either is not a number.
pub(crate) fn multiply(a: &Bson, b: &Bson) -> Option<Bson> {
    combine(a, b, i64::checked_mul, |x, y| x * y)
}

/// `a % b` (integer remainder keeps the integer type), or `None` if not numbers or `b` is 0.
pub(crate) fn remainder(a: &Bson, b: &Bson) -> Option<Bson> {
    if Number::of(b)?.as_f64() == 0.0 {
        return None;
    }
    combine(a, b, i64::checked_rem, |x, y| x % y)
}

/// The additive identity of mongod's `$sum`: `Int32(0)`.
pub(crate) fn zero() -> Bson {
    Bson::Int32(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_addition_promotes_to_long_on_overflow() {
        assert_eq!(add(&Bson::Int32(1), &Bson::Int32(2)), Some(Bson::Int32(3)));
        assert_eq!(
            add(&Bson::Int32(i32::MAX), &Bson::Int32(1)),
            Some(Bson::Int64(2_147_483_648))
        );
        assert_eq!(add(&Bson::Int64(1), &Bson::Int32(1)), Some(Bson::Int64(2)));
        assert_eq!(
            add(&Bson::Int32(1), &Bson::Double(0.5)),
            Some(Bson::Double(1.5))
        );
        assert_eq!(add(&Bson::Int32(1), &Bson::String("x".into())), None);
    }

    #[test]
    fn multiply_and_remainder_keep_integer_types() {
        assert_eq!(
            multiply(&Bson::Int32(3), &Bson::Int32(4)),
            Some(Bson::Int32(12))
        );
        assert_eq!(
            remainder(&Bson::Int64(7), &Bson::Int32(4)),
            Some(Bson::Int64(3))
        );
        assert_eq!(remainder(&Bson::Int32(7), &Bson::Int32(0)), None);
    }
}
