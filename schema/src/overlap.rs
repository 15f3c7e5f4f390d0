//! Overlap of key patterns: can two patterns ever produce the same Redis key?
//!
//! Two entity types, an index and an entity, or a stream and an entity whose
//! patterns overlap would write to the same key and corrupt each other, so
//! this is checked for meaning, not just syntax. [`overlap`] decides it
//! exactly under the value rules of [`validate_key_value`] and, when the
//! patterns overlap, returns a witness: the shortest key both patterns
//! produce, with the value of every placeholder on each side.
//!
//! ```
//! use redis_schema::{KeyPattern, overlap};
//!
//! let jobs = KeyPattern::parse("cj:{id}")?;
//! let by_slot = KeyPattern::parse("cj:by_slot")?;
//! let found = overlap(&jobs, &by_slot).expect("a job with id `by_slot` is the index");
//! assert_eq!(found.key, "cj:by_slot");
//! assert_eq!(found.left, [("id".to_owned(), "by_slot".to_owned())]);
//! assert!(found.right.is_empty());
//!
//! // A value cannot contain `:`, so these never meet.
//! let output = KeyPattern::parse("job:{id}:output")?;
//! assert_eq!(overlap(&KeyPattern::parse("job:{id}")?, &output), None);
//! # Ok::<(), redis_schema::PatternError>(())
//! ```
//!
//! # Method
//!
//! A pattern denotes a regular language: its literal characters in order, each
//! placeholder standing for one or more characters that values may hold. Each
//! pattern becomes a small nondeterministic automaton whose states are
//! "before token `i`" and "inside placeholder `i`", and a breadth-first search
//! over pairs of states (the product automaton) looks for a pair where both
//! patterns accept. Breadth-first order makes the witness a shortest one.
//!
//! Only the characters in either pattern's literal text, plus one
//! representative of all other characters values may hold, need to be tried:
//! every such other character behaves the same in both automata.
//!
//! Values are also at most [`MAX_KEY_VALUE_LEN`] bytes, so the search carries
//! the byte length of the value each side is in the middle of and never lets
//! it grow past the limit. A search state that is the same pair of automaton
//! states as one already seen, with values at least as long, can do nothing
//! the earlier one could not and is dropped; that keeps the search small even
//! for disjoint patterns, where it has to exhaust every state.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::key::{KeyPattern, KeySegment, MAX_KEY_VALUE_LEN, RESERVED_CHARS, validate_key_value};

/// A key that two patterns both produce: proof that they overlap.
///
/// `left` and `right` hold one `(placeholder, value)` pair per placeholder of
/// the respective pattern, in pattern order; rendering each pattern with its
/// values gives `key`. Every value passes [`validate_key_value`].
///
/// ```
/// use redis_schema::{KeyPattern, overlap};
///
/// let left = KeyPattern::parse("a:{x}")?;
/// let right = KeyPattern::parse("{y}:b")?;
/// let found = overlap(&left, &right).expect("`a:b` is a key of both");
/// assert_eq!(found.key, "a:b");
/// assert_eq!(left.render(&found.left_values())?, found.key);
/// assert_eq!(right.render(&found.right_values())?, found.key);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The key both patterns produce.
    pub key: String,
    /// `(placeholder, value)` for each placeholder of the left pattern.
    pub left: Vec<(String, String)>,
    /// `(placeholder, value)` for each placeholder of the right pattern.
    pub right: Vec<(String, String)>,
}

impl Overlap {
    /// The left pattern's values in placeholder order, ready for
    /// [`KeyPattern::render`].
    pub fn left_values(&self) -> Vec<&str> {
        self.left.iter().map(|(_, value)| value.as_str()).collect()
    }

    /// The right pattern's values in placeholder order, ready for
    /// [`KeyPattern::render`].
    pub fn right_values(&self) -> Vec<&str> {
        self.right.iter().map(|(_, value)| value.as_str()).collect()
    }
}

/// Whether `left` and `right` can ever produce the same key, and if so a
/// shortest such key with the values that produce it on each side.
///
/// Exact under the value rules: a placeholder stands for 1 to
/// [`MAX_KEY_VALUE_LEN`] bytes of characters allowed by
/// [`validate_key_value`]. A pattern without placeholders is a fixed key, so
/// this also answers "can an entity key equal this index or stream key?".
/// Every pattern overlaps itself.
///
/// ```
/// use redis_schema::{KeyPattern, overlap};
///
/// let p = |s: &str| KeyPattern::parse(s);
/// // Two placeholders in the same place: any value is a key of both.
/// assert!(overlap(&p("acct:{id}")?, &p("acct:{team}")?).is_some());
/// // `ev:stream` is the key of the event with id `stream`.
/// let found = overlap(&p("ev:{id}")?, &p("ev:stream")?).expect("they meet");
/// assert_eq!(found.left_values(), ["stream"]);
/// // Different literal text where neither side has a placeholder.
/// assert_eq!(overlap(&p("jobs:user:{user_id}")?, &p("jobs:status:{status}")?), None);
/// assert_eq!(overlap(&p("user:{id}")?, &p("users:by_email")?), None);
/// assert_eq!(overlap(&p("git_provider:{id}")?, &p("git_providers:{user_id}")?), None);
/// # Ok::<(), redis_schema::PatternError>(())
/// ```
pub fn overlap(left: &KeyPattern, right: &KeyPattern) -> Option<Overlap> {
    let left_nfa = Nfa::new(left);
    let right_nfa = Nfa::new(right);
    let alphabet = alphabet(&left_nfa, &right_nfa);
    let path = search(&left_nfa, &right_nfa, &alphabet)?;

    let key: String = path.iter().map(|step| step.ch).collect();
    let left = left_nfa.values(path.iter().map(|step| (step.ch, step.left)))?;
    let right = right_nfa.values(path.iter().map(|step| (step.ch, step.right)))?;
    Some(Overlap { key, left, right })
}

/// The first overlapping pair in a list of patterns, as indices `(i, j)` with
/// `i < j` and the witness for `overlap(patterns[i], patterns[j])`.
///
/// Pairs are tried in order: `(0, 1)`, `(0, 2)`, ..., `(1, 2)`, ... A pattern
/// is not compared with itself.
///
/// ```
/// use redis_schema::{KeyPattern, first_overlap};
///
/// let user = KeyPattern::parse("user:{id}")?;
/// let by_email = KeyPattern::parse("users:by_email")?;
/// let admins = KeyPattern::parse("user:admins")?;
/// let (i, j, found) = first_overlap(&[&user, &by_email, &admins]).expect("user `admins`");
/// assert_eq!((i, j), (0, 2));
/// assert_eq!(found.key, "user:admins");
/// assert_eq!(first_overlap(&[&user, &by_email]), None);
/// # Ok::<(), redis_schema::PatternError>(())
/// ```
pub fn first_overlap(patterns: &[&KeyPattern]) -> Option<(usize, usize, Overlap)> {
    patterns.iter().enumerate().find_map(|(i, left)| {
        patterns
            .iter()
            .enumerate()
            .skip(i + 1)
            .find_map(|(j, right)| overlap(left, right).map(|found| (i, j, found)))
    })
}

/// One piece of a pattern for the automaton: a literal character or a
/// placeholder (its index among the pattern's placeholders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    Hole(usize),
}

/// A state of one pattern's automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    /// Before token `i` (`i == tokens.len()`: after the whole pattern).
    At(usize),
    /// Inside the placeholder at token `i`, having read at least one character.
    In(usize),
}

/// One pattern as an automaton over characters.
struct Nfa {
    tokens: Vec<Token>,
    names: Vec<String>,
}

impl Nfa {
    fn new(pattern: &KeyPattern) -> Nfa {
        let mut tokens = Vec::new();
        let mut names = Vec::new();
        for segment in pattern.segments() {
            match segment {
                KeySegment::Literal(text) => tokens.extend(text.chars().map(Token::Char)),
                KeySegment::Placeholder(name) => {
                    tokens.push(Token::Hole(names.len()));
                    names.push(name.clone());
                }
            }
        }
        Nfa { tokens, names }
    }

    /// The states reachable from `state` by reading `ch`, pushed onto `out`.
    fn step(&self, state: State, ch: char, out: &mut Vec<State>) {
        match state {
            State::At(i) => match self.tokens.get(i) {
                Some(Token::Char(c)) if *c == ch => out.push(State::At(i + 1)),
                Some(Token::Hole(_)) if value_char(ch) => out.push(State::In(i)),
                _ => {}
            },
            State::In(i) => {
                // Either the value goes on, or it has ended and `ch` is read
                // by whatever follows the placeholder.
                if value_char(ch) {
                    out.push(State::In(i));
                }
                self.step(State::At(i + 1), ch, out);
            }
        }
    }

    /// Whether the pattern can end in `state`.
    fn accepts(&self, state: State) -> bool {
        match state {
            State::At(i) => i == self.tokens.len(),
            State::In(i) => i + 1 == self.tokens.len(),
        }
    }

    /// Splits a path of `(character, state after it)` into this pattern's
    /// values: a character belongs to placeholder `i` exactly when it leads
    /// into `In(i)`. `None` if some value breaks the value rules, which the
    /// search rules out, or a placeholder got no characters.
    fn values(&self, path: impl Iterator<Item = (char, State)>) -> Option<Vec<(String, String)>> {
        let mut values = vec![String::new(); self.names.len()];
        for (ch, state) in path {
            if let State::In(i) = state {
                let Some(Token::Hole(hole)) = self.tokens.get(i) else {
                    return None;
                };
                values.get_mut(*hole)?.push(ch);
            }
        }
        let mut named = Vec::with_capacity(values.len());
        for (name, value) in self.names.iter().zip(values) {
            validate_key_value(&value).ok()?;
            named.push((name.clone(), value));
        }
        Some(named)
    }

    fn literal_chars(&self) -> impl Iterator<Item = char> + '_ {
        self.tokens.iter().filter_map(|token| match token {
            Token::Char(c) => Some(*c),
            Token::Hole(_) => None,
        })
    }
}

/// Whether a value may hold `ch` (the character rules of [`validate_key_value`]).
fn value_char(ch: char) -> bool {
    !RESERVED_CHARS.contains(&ch) && !ch.is_whitespace() && !ch.is_control()
}

/// The characters worth trying: one value character that is in neither
/// pattern's literal text, standing for all such characters, then every
/// literal character of either pattern. The representative comes first so that
/// a free choice of value reads as such (`x`). Letters are preferred for it;
/// among the rest the search goes by code point, so the representative is as
/// short in UTF-8 as any character it stands for.
fn alphabet(left: &Nfa, right: &Nfa) -> Vec<char> {
    let literal: BTreeSet<char> = left.literal_chars().chain(right.literal_chars()).collect();
    let unused = |ch: &char| value_char(*ch) && !literal.contains(ch);
    let representative = "xyzqwvkj".chars().find(unused).or_else(|| {
        (0x21..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .find(unused)
    });
    representative.into_iter().chain(literal).collect()
}

/// One step of a witness: the character read and both automata's states after
/// reading it.
#[derive(Debug, Clone, Copy)]
struct Step {
    ch: char,
    left: State,
    right: State,
}

/// A search node: both states, the byte length of the value each side is in
/// the middle of (0 when it is not inside a placeholder), and how it was
/// reached.
#[derive(Debug, Clone, Copy)]
struct Node {
    left: State,
    right: State,
    left_len: usize,
    right_len: usize,
    /// Index of the previous node and the character read from it; `None` for
    /// the start.
    from: Option<(usize, char)>,
}

/// Breadth-first search of the product automaton for a pair of accepting
/// states; returns the steps of a shortest path.
fn search(left: &Nfa, right: &Nfa, alphabet: &[char]) -> Option<Vec<Step>> {
    let start = Node {
        left: State::At(0),
        right: State::At(0),
        left_len: 0,
        right_len: 0,
        from: None,
    };
    let mut nodes = vec![start];
    // For each pair of states, the value lengths it has been reached with;
    // a new arrival that is no shorter on both sides is redundant.
    let mut seen: HashMap<(State, State), Vec<(usize, usize)>> = HashMap::new();
    seen.insert((start.left, start.right), vec![(0, 0)]);
    let mut queue = VecDeque::from([0usize]);
    let (mut left_next, mut right_next) = (Vec::new(), Vec::new());

    while let Some(index) = queue.pop_front() {
        let node = *nodes.get(index)?;
        if left.accepts(node.left) && right.accepts(node.right) {
            return Some(path_to(&nodes, index));
        }
        for &ch in alphabet {
            left_next.clear();
            right_next.clear();
            left.step(node.left, ch, &mut left_next);
            right.step(node.right, ch, &mut right_next);
            for &l in &left_next {
                let Some(left_len) = value_len(node.left, node.left_len, l, ch) else {
                    continue;
                };
                for &r in &right_next {
                    let Some(right_len) = value_len(node.right, node.right_len, r, ch) else {
                        continue;
                    };
                    let lengths = seen.entry((l, r)).or_default();
                    if lengths
                        .iter()
                        .any(|&(a, b)| a <= left_len && b <= right_len)
                    {
                        continue;
                    }
                    lengths.retain(|&(a, b)| !(left_len <= a && right_len <= b));
                    lengths.push((left_len, right_len));
                    queue.push_back(nodes.len());
                    nodes.push(Node {
                        left: l,
                        right: r,
                        left_len,
                        right_len,
                        from: Some((index, ch)),
                    });
                }
            }
        }
    }
    None
}

/// The byte length of the current value after moving `from` → `to` on `ch`,
/// or `None` if that would make it longer than [`MAX_KEY_VALUE_LEN`].
fn value_len(from: State, len: usize, to: State, ch: char) -> Option<usize> {
    let len = match to {
        // Staying in the same placeholder extends its value...
        State::In(_) if to == from => len + ch.len_utf8(),
        // ...entering one starts a new value...
        State::In(_) => ch.len_utf8(),
        // ...and literal text is no value at all.
        State::At(_) => 0,
    };
    (len <= MAX_KEY_VALUE_LEN).then_some(len)
}

/// The steps from the start to `nodes[index]`.
fn path_to(nodes: &[Node], mut index: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    while let Some(node) = nodes.get(index) {
        let Some((previous, ch)) = node.from else {
            break;
        };
        steps.push(Step {
            ch,
            left: node.left,
            right: node.right,
        });
        index = previous;
    }
    steps.reverse();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> KeyPattern {
        match KeyPattern::parse(source) {
            Ok(pattern) => pattern,
            Err(err) => panic!("{source:?} should parse: {err}"),
        }
    }

    fn pairs(values: &[(&str, &str)]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// `overlap` both ways round, checked to be symmetric and, when found, a
    /// real key of both patterns; the left-to-right witness is returned.
    fn check(left: &str, right: &str) -> Option<Overlap> {
        let (left, right) = (pattern(left), pattern(right));
        let forward = overlap(&left, &right);
        let backward = overlap(&right, &left);
        assert_eq!(forward.is_some(), backward.is_some(), "{left} vs {right}");
        for (found, l, r) in [(&forward, &left, &right), (&backward, &right, &left)] {
            if let Some(found) = found {
                assert_eq!(l.render(&found.left_values()).as_ref(), Ok(&found.key));
                assert_eq!(r.render(&found.right_values()).as_ref(), Ok(&found.key));
                let names: Vec<&str> = found.left.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, l.placeholders().collect::<Vec<_>>());
            }
        }
        if let (Some(f), Some(b)) = (&forward, &backward) {
            assert_eq!(f.key.len(), b.key.len(), "both are shortest");
        }
        forward
    }

    #[test]
    fn placeholder_meets_fixed_key() {
        let found = check("cj:{id}", "cj:by_slot");
        assert_eq!(
            found,
            Some(Overlap {
                key: "cj:by_slot".to_owned(),
                left: pairs(&[("id", "by_slot")]),
                right: vec![],
            })
        );
        let found = check("ev:{id}", "ev:stream");
        assert_eq!(found.map(|f| f.left), Some(pairs(&[("id", "stream")])));
    }

    #[test]
    fn same_shape_different_names() {
        let found = check("acct:{id}", "acct:{team}");
        let found = found.expect("overlap");
        assert_eq!(found.key, "acct:x");
        assert_eq!(found.left, pairs(&[("id", "x")]));
        assert_eq!(found.right, pairs(&[("team", "x")]));
    }

    #[test]
    fn placeholders_on_opposite_ends() {
        let found = check("a:{x}", "{y}:b").expect("overlap");
        assert_eq!(found.key, "a:b");
        assert_eq!(found.left, pairs(&[("x", "b")]));
        assert_eq!(found.right, pairs(&[("y", "a")]));
    }

    #[test]
    fn disjoint_examples() {
        for (left, right) in [
            ("job:{id}", "job:{id}:output"),
            ("jobs:user:{user_id}", "jobs:status:{status}"),
            ("user:{id}", "users:by_email"),
            ("git_provider:{id}", "git_providers:{user_id}"),
            ("config", "configs"),
            ("a:{x}:b", "a:{y}:c"),
            ("{x}", "a:{y}"),
            ("user:{{{id}}}", "user:{id}"),
        ] {
            assert_eq!(check(left, right), None, "{left} vs {right}");
        }
    }

    #[test]
    fn fixed_keys_and_self() {
        assert_eq!(
            check("jobs:stream", "jobs:stream").map(|f| f.key),
            Some("jobs:stream".to_owned())
        );
        for source in [
            "job:{id}",
            "member:{org}:{user}",
            "{a}-{b}",
            "user:{{{id}}}",
        ] {
            let found = check(source, source).expect("a pattern overlaps itself");
            assert_eq!(found.left, found.right, "{source}");
        }
    }

    #[test]
    fn values_may_not_contain_reserved_characters() {
        // `{x}` would have to be `a:b` or `{b}`.
        assert_eq!(check("k:{x}", "k:a:b"), None);
        assert_eq!(check("k:{x}", "k:{{b}}"), None);
        assert!(check("{x}", "a.b").is_some());
    }

    #[test]
    fn ambiguous_splits_and_unicode() {
        let found = check("{a}-{b}", "x-{c}-y").expect("overlap");
        assert_eq!(found.key.matches('-').count(), 2);
        let found = check("ключ:{id}", "ключ:é").expect("overlap");
        assert_eq!(found.left, pairs(&[("id", "é")]));
        // Literal characters are tried, not only the representative.
        let found = check("{a}", "xyzqwvkj").expect("overlap");
        assert_eq!(found.key, "xyzqwvkj");
        assert_eq!(check("x{a}", "{b}y").map(|f| f.key.len()), Some(2));
    }

    #[test]
    fn value_length_limit_is_respected() {
        let long = "a".repeat(MAX_KEY_VALUE_LEN + 1);
        assert_eq!(check("p:{x}", &format!("p:{long}")), None);
        let fits = "a".repeat(MAX_KEY_VALUE_LEN);
        assert!(check("p:{x}", &format!("p:{fits}")).is_some());
        // Multi-byte characters count in bytes.
        let wide = "é".repeat(MAX_KEY_VALUE_LEN / 2 + 1);
        assert_eq!(check("p:{x}", &format!("p:{wide}")), None);

        // The shortest key splits only one way that keeps both values short
        // enough: `{y}` takes `aaa.aaa...` or the tail, but not 601 bytes.
        let half = "a".repeat(300);
        let found = check("{x}.{y}", &format!("{{z}}.{half}.{half}")).expect("overlap");
        assert!(found.left.iter().all(|(_, v)| v.len() <= MAX_KEY_VALUE_LEN));

        // Two values in lockstep, both long.
        let found = check("{x}", &format!("{long}{{y}}"));
        assert_eq!(found, None);
    }

    #[test]
    fn first_overlap_reports_indices() {
        let (a, b, c) = (pattern("a:{x}"), pattern("b:{x}"), pattern("{y}:z"));
        let (i, j, found) = first_overlap(&[&a, &b, &c]).expect("overlap");
        assert_eq!((i, j), (0, 2));
        assert_eq!(found.key, "a:z");
        assert_eq!(first_overlap(&[&a, &b]), None);
        assert_eq!(first_overlap(&[&a]), None);
        assert_eq!(first_overlap(&[]), None);
    }
}
