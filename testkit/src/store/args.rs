//! Typed access to the fields of a command body (or of one statement inside it), failing the
//! way mongod's IDL parser does: a missing required field is `Location40414`, a field of the
//! wrong type is `TypeMismatch` (14), each naming the field as `command.field`.

use bson::{Bson, Document};

use super::CommandError;
use super::compare::type_name;

/// A document being read as command arguments; `context` prefixes field names in messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Args<'a> {
    context: &'a str,
    doc: &'a Document,
}

impl<'a> Args<'a> {
    pub(crate) fn new(context: &'a str, doc: &'a Document) -> Self {
        Self { context, doc }
    }

    pub(crate) fn get(&self, field: &str) -> Option<&'a Bson> {
        self.doc.get(field)
    }

    fn wrong_type(&self, field: &str, value: &Bson, expected: &str) -> CommandError {
        CommandError::type_mismatch(format!(
            "BSON field '{}.{field}' is the wrong type '{}', expected type '{expected}'",
            self.context,
            type_name(value)
        ))
    }

    pub(crate) fn missing(&self, field: &str) -> CommandError {
        CommandError::location(
            40414,
            format!(
                "BSON field '{}.{field}' is missing but a required field",
                self.context
            ),
        )
    }

    /// An optional embedded document; `null` counts as absent.
    pub(crate) fn document(&self, field: &str) -> Result<Option<&'a Document>, CommandError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Document(d)) => Ok(Some(d)),
            Some(other) => Err(self.wrong_type(field, other, "object")),
        }
    }

    pub(crate) fn required_document(&self, field: &str) -> Result<&'a Document, CommandError> {
        self.document(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn required_array(&self, field: &str) -> Result<&'a Vec<Bson>, CommandError> {
        match self.doc.get(field) {
            None => Err(self.missing(field)),
            Some(Bson::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong_type(field, other, "array")),
        }
    }

    /// A required array whose elements must all be documents.
    pub(crate) fn required_documents(
        &self,
        field: &str,
    ) -> Result<Vec<&'a Document>, CommandError> {
        let items = self.required_array(field)?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Bson::Document(d) => Ok(d),
                other => Err(self.wrong_type(&format!("{field}.{i}"), other, "object")),
            })
            .collect()
    }

    /// A boolean; like mongod's `safeBool`, numbers are accepted (non-zero is true).
    pub(crate) fn bool(&self, field: &str, default: bool) -> Result<bool, CommandError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(default),
            Some(Bson::Boolean(b)) => Ok(*b),
            Some(Bson::Int32(i)) => Ok(*i != 0),
            Some(Bson::Int64(i)) => Ok(*i != 0),
            Some(Bson::Double(f)) => Ok(*f != 0.0),
            Some(other) => Err(self.wrong_type(field, other, "bool")),
        }
    }

    /// An optional integer given as any numeric type.
    pub(crate) fn integer(&self, field: &str) -> Result<Option<i64>, CommandError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Int32(i)) => Ok(Some(i64::from(*i))),
            Some(Bson::Int64(i)) => Ok(Some(*i)),
            Some(Bson::Double(f)) if f.fract() == 0.0 => Ok(Some(*f as i64)),
            Some(Bson::Double(f)) => Err(CommandError::failed_to_parse(format!(
                "Expected an integer: {field}: {f}"
            ))),
            Some(other) => Err(CommandError::type_mismatch(format!(
                "BSON field '{}.{field}' is the wrong type '{}', expected types '[long, int, decimal, double]'",
                self.context,
                type_name(other)
            ))),
        }
    }

    /// An optional non-negative integer (`skip`, `limit` in count); negative fails as mongod.
    pub(crate) fn non_negative(&self, field: &str) -> Result<Option<i64>, CommandError> {
        match self.integer(field)? {
            Some(n) if n < 0 => Err(CommandError::location(
                51024,
                format!("BSON field '{field}' value must be >= 0, actual value '{n}'"),
            )),
            other => Ok(other),
        }
    }

    pub(crate) fn string(&self, field: &str) -> Result<Option<&'a str>, CommandError> {
        match self.doc.get(field) {
            None => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(field, other, "string")),
        }
    }
}
