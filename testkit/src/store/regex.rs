//! A small backtracking regular-expression matcher for `$regex` and `/.../` queries, covering
//! the PCRE subset tests use: literals, `.`, `^`, `$`, classes (`[a-z]`, `[^x]`, `\d\w\s`),
//! groups `(...)`/`(?:...)`, alternation, `* + ? {n,m}` (greedy and lazy), `\b`; options
//! `i`, `m`, `s`, `x`. Unsupported syntax is a parse error, never a silent mismatch.

#[cfg(test)]
mod tests;

/// A compiled pattern.
#[derive(Clone, Debug)]
pub(crate) struct Regex {
    alternatives: Vec<Vec<Node>>,
    case_insensitive: bool,
    multiline: bool,
    dot_all: bool,
}

#[derive(Clone, Debug)]
enum Node {
    Char(char),
    Any,
    Class {
        items: Vec<ClassItem>,
        negated: bool,
    },
    Start,
    End,
    WordBoundary(bool),
    Group(Vec<Vec<Node>>),
    Repeat {
        node: Box<Node>,
        min: usize,
        max: usize,
        greedy: bool,
    },
}

#[derive(Clone, Debug)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl Regex {
    /// Compiles `pattern` with mongod option letters.
    ///
    /// # Errors
    /// A message describing the unsupported or malformed construct.
    pub(crate) fn new(pattern: &str, options: &str) -> Result<Self, String> {
        let extended = options.contains('x');
        let chars: Vec<char> = if extended {
            pattern.chars().filter(|c| !c.is_whitespace()).collect()
        } else {
            pattern.chars().collect()
        };
        let mut parser = Parser { chars, pos: 0 };
        let alternatives = parser.alternation()?;
        if parser.pos != parser.chars.len() {
            return Err("unmatched parentheses".to_owned());
        }
        Ok(Self {
            alternatives,
            case_insensitive: options.contains('i'),
            multiline: options.contains('m'),
            dot_all: options.contains('s'),
        })
    }

    /// True if the pattern matches anywhere in `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let matcher = Matcher {
            re: self,
            text: &text,
        };
        (0..=text.len()).any(|start| {
            self.alternatives
                .iter()
                .any(|seq| matcher.seq(seq, start, &mut |_| true))
        })
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Vec<Vec<Node>>, String> {
        let mut alternatives = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alternatives.push(self.sequence()?);
        }
        Ok(alternatives)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.pos += 1;
            let atom = match c {
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '[' => self.class()?,
                '(' => {
                    if self.chars.get(self.pos..self.pos + 2) == Some(&['?', ':']) {
                        self.pos += 2;
                    } else if self.peek() == Some('?') {
                        return Err("unsupported group syntax".to_owned());
                    }
                    let inner = self.alternation()?;
                    if self.peek() != Some(')') {
                        return Err("missing )".to_owned());
                    }
                    self.pos += 1;
                    Node::Group(inner)
                }
                '\\' => self.escape(false)?,
                '*' | '+' | '?' => return Err(format!("nothing to repeat at '{c}'")),
                other => Node::Char(other),
            };
            let node = self.quantifier(atom)?;
            nodes.push(node);
        }
        Ok(nodes)
    }

    fn quantifier(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('?') => (0, 1),
            Some('{') => match self.braces() {
                Some(bounds) => bounds,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.pos += 1;
        let greedy = if self.peek() == Some('?') {
            self.pos += 1;
            false
        } else {
            true
        };
        if matches!(atom, Node::Start | Node::End | Node::WordBoundary(_)) {
            return Err("nothing to repeat".to_owned());
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    /// Parses `{n}`, `{n,}` or `{n,m}` at the cursor, leaving it on the closing brace.
    fn braces(&mut self) -> Option<(usize, usize)> {
        let close = self.chars[self.pos..].iter().position(|&c| c == '}')? + self.pos;
        let body: String = self.chars[self.pos + 1..close].iter().collect();
        let (min, max) = match body.split_once(',') {
            None => {
                let n = body.parse().ok()?;
                (n, n)
            }
            Some((lo, "")) => (lo.parse().ok()?, usize::MAX),
            Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
        };
        self.pos = close;
        Some((min, max))
    }

    fn escape(&mut self, in_class: bool) -> Result<Node, String> {
        let c = self.peek().ok_or("trailing backslash")?;
        self.pos += 1;
        let class = |item| Node::Class {
            items: vec![item],
            negated: false,
        };
        Ok(match c {
            'd' => class(ClassItem::Digit(true)),
            'D' => class(ClassItem::Digit(false)),
            'w' => class(ClassItem::Word(true)),
            'W' => class(ClassItem::Word(false)),
            's' => class(ClassItem::Space(true)),
            'S' => class(ClassItem::Space(false)),
            'b' if !in_class => Node::WordBoundary(true),
            'B' if !in_class => Node::WordBoundary(false),
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            'r' => Node::Char('\r'),
            c if c.is_ascii_alphanumeric() => return Err(format!("unsupported escape \\{c}")),
            other => Node::Char(other),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self
                .peek()
                .ok_or("missing terminating ] for character class")?;
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let start = if c == '\\' {
                match self.escape(true)? {
                    Node::Char(ch) => ch,
                    Node::Class { items: inner, .. } => {
                        items.extend(inner);
                        continue;
                    }
                    _ => return Err("unsupported escape in class".to_owned()),
                }
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let mut end = self.peek().ok_or("bad range")?;
                self.pos += 1;
                if end == '\\' {
                    end = match self.escape(true)? {
                        Node::Char(ch) => ch,
                        _ => return Err("bad range".to_owned()),
                    };
                }
                items.push(ClassItem::Range(start, end));
            } else {
                items.push(ClassItem::Range(start, start));
            }
        }
        Ok(Node::Class { items, negated })
    }
}

struct Matcher<'a> {
    re: &'a Regex,
    text: &'a [char],
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Matcher<'_> {
    fn seq(&self, nodes: &[Node], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match nodes.split_first() {
            None => k(pos),
            Some((node, rest)) => self.node(node, pos, &mut |next| self.seq(rest, next, k)),
        }
    }

    fn node(&self, node: &Node, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let len = self.text.len();
        match node {
            Node::Char(_) | Node::Any | Node::Class { .. } => match self.text.get(pos) {
                Some(&c) if self.single(node, c) => k(pos + 1),
                _ => false,
            },
            Node::Start => {
                (pos == 0 || (self.re.multiline && self.text[pos - 1] == '\n')) && k(pos)
            }
            Node::End => {
                let at_end = pos == len || (pos + 1 == len && self.text[pos] == '\n');
                (at_end || (self.re.multiline && self.text[pos] == '\n')) && k(pos)
            }
            Node::WordBoundary(want) => {
                let before = pos > 0 && is_word(self.text[pos - 1]);
                let after = pos < len && is_word(self.text[pos]);
                ((before != after) == *want) && k(pos)
            }
            Node::Group(alternatives) => alternatives.iter().any(|seq| self.seq(seq, pos, k)),
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => self.repeat(node, *min, *max, *greedy, 0, pos, k),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &self,
        node: &Node,
        min: usize,
        max: usize,
        greedy: bool,
        count: usize,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        if count < min {
            return self.node(node, pos, &mut |next| {
                self.repeat(node, min, max, greedy, count + 1, next, k)
            });
        }
        if greedy {
            let more = count < max
                && self.node(node, pos, &mut |next| {
                    next != pos && self.repeat(node, min, max, greedy, count + 1, next, k)
                });
            more || k(pos)
        } else {
            k(pos)
                || (count < max
                    && self.node(node, pos, &mut |next| {
                        next != pos && self.repeat(node, min, max, greedy, count + 1, next, k)
                    }))
        }
    }

    fn single(&self, node: &Node, c: char) -> bool {
        match node {
            Node::Char(expected) => {
                *expected == c || (self.re.case_insensitive && fold(*expected) == fold(c))
            }
            Node::Any => self.re.dot_all || c != '\n',
            Node::Class { items, negated } => {
                let hit = items.iter().any(|item| self.class_item(item, c));
                hit != *negated
            }
            _ => false,
        }
    }

    fn class_item(&self, item: &ClassItem, c: char) -> bool {
        match item {
            ClassItem::Range(lo, hi) => {
                (*lo..=*hi).contains(&c)
                    || (self.re.case_insensitive
                        && ((*lo..=*hi).contains(&fold(c))
                            || c.to_uppercase().any(|u| (*lo..=*hi).contains(&u))))
            }
            ClassItem::Digit(want) => c.is_ascii_digit() == *want,
            ClassItem::Word(want) => is_word(c) == *want,
            ClassItem::Space(want) => c.is_whitespace() == *want,
        }
    }
}

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}
