//! Projections, as `find`'s `projection`, `findAndModify`'s `fields` and the `$project` stage
//! take them: inclusion (`{a: 1}`, `_id` kept unless `_id: 0`) or exclusion (`{a: 0}`), never
//! both (mongod's 31253/31254), dotted paths reaching into arrays of sub-documents, computed
//! fields from expressions, and `$slice`.

use bson::{Bson, Document};

use super::CommandError;
use super::expression;

/// A parsed projection; apply it with [`Projection::apply`].
#[derive(Clone, Debug)]
pub(crate) struct Projection {
    inclusion: bool,
    keep_id: bool,
    tree: Tree,
    slices: Vec<(Vec<String>, i64, Option<i64>)>,
}

type Tree = Vec<(String, Node)>;

#[derive(Clone, Debug)]
enum Node {
    Include,
    Exclude,
    Computed(Bson),
    Sub(Tree),
}

impl Projection {
    /// Parses a projection; `None` for an empty one (the whole document).
    ///
    /// # Errors
    /// `Location31253`/`Location31254` when inclusion and exclusion are mixed,
    /// `Location31250` for colliding paths, `BadValue` for unsupported operators.
    pub(crate) fn parse(spec: &Document) -> Result<Option<Self>, CommandError> {
        if spec.is_empty() {
            return Ok(None);
        }
        let mut projection = Self {
            inclusion: false,
            keep_id: true,
            tree: Vec::new(),
            slices: Vec::new(),
        };
        let mut mode: Option<bool> = None;
        let mut id_rule: Option<bool> = None;
        let mut leaves = Vec::new();
        flatten(spec, "", &mut leaves)?;
        for (path, node) in leaves {
            let is_include = !matches!(node, Node::Exclude);
            if path == "_id" && !matches!(node, Node::Computed(_)) {
                id_rule = Some(is_include);
                continue;
            }
            match (mode, is_include) {
                (Some(false), true) => {
                    return Err(CommandError::location(
                        31253,
                        format!("Cannot do inclusion on field {path} in exclusion projection"),
                    ));
                }
                (Some(true), false) => {
                    return Err(CommandError::location(
                        31254,
                        format!("Cannot do exclusion on field {path} in inclusion projection"),
                    ));
                }
                _ => mode = Some(is_include),
            }
            insert(&mut projection.tree, &path, node)?;
        }
        let inclusion = mode.unwrap_or(id_rule != Some(false));
        projection.inclusion = inclusion;
        projection.keep_id = id_rule.unwrap_or(true);
        Ok(Some(projection))
    }

    /// Parses a `$slice`-bearing or ordinary spec; `$slice` entries are recorded here.
    fn add_slice(&mut self, path: &str, arg: &Bson) -> Result<(), CommandError> {
        let number = |v: &Bson| super::compare::Number::of(v).map(|n| n.as_f64() as i64);
        let (skip, limit) = match arg {
            Bson::Array(items) if items.len() == 2 => {
                match (number(&items[0]), number(&items[1])) {
                    (Some(skip), Some(limit)) if limit > 0 => (skip, Some(limit)),
                    _ => {
                        return Err(CommandError::location(
                            28724,
                            "First argument to $slice must be an array, and the second must be a \
                             positive number",
                        ));
                    }
                }
            }
            other => match number(other) {
                Some(n) => (n, None),
                None => {
                    return Err(CommandError::location(
                        28667,
                        "$slice only supports numbers and [skip, limit] arrays",
                    ));
                }
            },
        };
        self.slices
            .push((path.split('.').map(str::to_owned).collect(), skip, limit));
        Ok(())
    }

    /// Projects one document.
    ///
    /// # Errors
    /// Errors from evaluating computed fields.
    pub(crate) fn apply(&self, doc: &Document) -> Result<Document, CommandError> {
        let mut out = if self.inclusion {
            let mut out = Document::new();
            if self.keep_id
                && let Some(id) = doc.get("_id")
            {
                out.insert("_id", id.clone());
            }
            out.extend(include(doc, &self.tree));
            compute(&self.tree, doc, &mut out, &[])?;
            out
        } else {
            let mut out = doc.clone();
            exclude(&mut out, &self.tree);
            if !self.keep_id {
                out.remove("_id");
            }
            out
        };
        for (path, skip, limit) in &self.slices {
            slice_at(&mut out, path, *skip, *limit);
        }
        Ok(out)
    }
}

/// Parses a projection that may contain `$slice`.
///
/// # Errors
/// As [`Projection::parse`].
pub(crate) fn parse_find(spec: &Document) -> Result<Option<Projection>, CommandError> {
    let mut plain = Document::new();
    let mut slices = Vec::new();
    for (k, v) in spec {
        match v {
            Bson::Document(d) if d.keys().next().map(String::as_str) == Some("$slice") => {
                slices.push((k.clone(), d.get("$slice").cloned().unwrap_or(Bson::Null)));
            }
            _ => {
                plain.insert(k.clone(), v.clone());
            }
        }
    }
    if slices.is_empty() {
        return Projection::parse(spec);
    }
    let mut projection = Projection::parse(&plain)?.unwrap_or(Projection {
        inclusion: false,
        keep_id: true,
        tree: Vec::new(),
        slices: Vec::new(),
    });
    for (path, arg) in slices {
        if projection.inclusion {
            insert(&mut projection.tree, &path, Node::Include)?;
        }
        projection.add_slice(&path, &arg)?;
    }
    Ok(Some(projection))
}

fn flatten(
    spec: &Document,
    prefix: &str,
    out: &mut Vec<(String, Node)>,
) -> Result<(), CommandError> {
    for (key, value) in spec {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if key.starts_with('$') || key.ends_with(".$") || key.contains(".$.") {
            return Err(CommandError::bad_value(format!(
                "atlas-sim does not support the projection operator in '{path}'"
            )));
        }
        let node = match value {
            Bson::Boolean(b) => {
                if *b {
                    Node::Include
                } else {
                    Node::Exclude
                }
            }
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
                if expression::truthy(Some(value)) {
                    Node::Include
                } else {
                    Node::Exclude
                }
            }
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                let op = d.keys().next().map(String::as_str).unwrap_or_default();
                if matches!(op, "$slice" | "$elemMatch" | "$meta") {
                    return Err(CommandError::bad_value(format!(
                        "atlas-sim does not support {op} in this projection"
                    )));
                }
                expression::check(value)?;
                Node::Computed(value.clone())
            }
            Bson::Document(d) if !d.is_empty() => {
                flatten(d, &path, out)?;
                continue;
            }
            other => {
                expression::check(other)?;
                Node::Computed(other.clone())
            }
        };
        out.push((path, node));
    }
    Ok(())
}

fn insert(tree: &mut Tree, path: &str, node: Node) -> Result<(), CommandError> {
    let collision = || CommandError::location(31250, format!("Path collision at {path}"));
    let parts: Vec<&str> = path.split('.').collect();
    let mut current = tree;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let position = current.iter().position(|(k, _)| k == part);
        if last {
            if position.is_some() {
                return Err(collision());
            }
            current.push(((*part).to_owned(), node));
            return Ok(());
        }
        let index = match position {
            Some(index) => index,
            None => {
                current.push(((*part).to_owned(), Node::Sub(Vec::new())));
                current.len() - 1
            }
        };
        current = match &mut current[index].1 {
            Node::Sub(sub) => sub,
            _ => return Err(collision()),
        };
    }
    Ok(())
}

fn include(doc: &Document, tree: &Tree) -> Document {
    let mut out = Document::new();
    for (key, value) in doc {
        if key == "_id" && tree.iter().all(|(k, _)| k != "_id") {
            continue;
        }
        match tree.iter().find(|(k, _)| k == key).map(|(_, n)| n) {
            Some(Node::Include) => {
                out.insert(key.clone(), value.clone());
            }
            Some(Node::Sub(sub)) => match value {
                Bson::Document(d) => {
                    out.insert(key.clone(), include(d, sub));
                }
                Bson::Array(items) => {
                    out.insert(key.clone(), include_array(items, sub));
                }
                _ => {}
            },
            _ => {}
        }
    }
    out
}

fn include_array(items: &[Bson], tree: &Tree) -> Bson {
    Bson::Array(
        items
            .iter()
            .filter_map(|item| match item {
                Bson::Document(d) => Some(Bson::Document(include(d, tree))),
                Bson::Array(inner) => Some(include_array(inner, tree)),
                _ => None,
            })
            .collect(),
    )
}

fn compute(
    tree: &Tree,
    root: &Document,
    out: &mut Document,
    prefix: &[&str],
) -> Result<(), CommandError> {
    for (key, node) in tree {
        let mut path = prefix.to_vec();
        path.push(key);
        match node {
            Node::Computed(expr) => {
                if let Some(value) = expression::evaluate(expr, root)? {
                    set_lenient(out, &path, value);
                }
            }
            Node::Sub(sub) => compute(sub, root, out, &path)?,
            _ => {}
        }
    }
    Ok(())
}

/// Sets `path`, replacing anything that is not a document on the way.
pub(crate) fn set_lenient(doc: &mut Document, path: &[&str], value: Bson) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.insert(*head, value);
        return;
    }
    if !matches!(doc.get(*head), Some(Bson::Document(_))) {
        doc.insert(*head, Document::new());
    }
    if let Some(Bson::Document(inner)) = doc.get_mut(*head) {
        set_lenient(inner, rest, value);
    }
}

fn exclude(doc: &mut Document, tree: &Tree) {
    for (key, node) in tree {
        match node {
            Node::Exclude => {
                doc.remove(key);
            }
            Node::Sub(sub) => match doc.get_mut(key) {
                Some(Bson::Document(d)) => exclude(d, sub),
                Some(Bson::Array(items)) => exclude_array(items, sub),
                _ => {}
            },
            _ => {}
        }
    }
}

fn exclude_array(items: &mut [Bson], tree: &Tree) {
    for item in items {
        match item {
            Bson::Document(d) => exclude(d, tree),
            Bson::Array(inner) => exclude_array(inner, tree),
            _ => {}
        }
    }
}

fn slice_at(doc: &mut Document, path: &[String], skip: i64, limit: Option<i64>) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    match doc.get_mut(head) {
        Some(Bson::Document(d)) if !rest.is_empty() => slice_at(d, rest, skip, limit),
        Some(Bson::Array(items)) if rest.is_empty() => {
            let len = items.len() as i64;
            let (start, count) = match limit {
                None if skip >= 0 => (0, skip),
                None => ((len + skip).max(0), len),
                Some(limit) if skip >= 0 => (skip.min(len), limit),
                Some(limit) => ((len + skip).max(0), limit),
            };
            let start = usize::try_from(start).unwrap_or(0);
            let count = usize::try_from(count).unwrap_or(0);
            let kept: Vec<Bson> = items.iter().skip(start).take(count).cloned().collect();
            *items = kept;
        }
        _ => {}
    }
}
