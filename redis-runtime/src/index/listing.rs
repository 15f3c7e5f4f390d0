//! What a list query returns: the entities, and the ones it passed over.

use std::ops::Deref;

use super::Skipped;
use crate::error::{Context, Error, Result};

/// The entities of a list query (a page of a sorted index, the members of
/// a set index), in order, plus the entities that were passed over because
/// their hash could not be decoded: written by another service in a form
/// this type cannot read, or corrupted. One such hash never fails the
/// whole query; each is reported here by key (and logged as a warning).
///
/// A `Listing` derefs to the slice of entities, so it can be iterated,
/// indexed and counted like a `Vec`. [`Listing::strict`] turns it into a
/// `Result` that fails on the first undecodable entity, for callers that
/// want all or nothing.
///
/// ```
/// use redis_runtime::index::Listing;
///
/// let listing = Listing::new(vec![1, 2, 3], Vec::new());
/// assert_eq!(listing.len(), 3);
/// assert!(listing.skipped().is_empty());
/// assert_eq!(listing.strict()?, vec![1, 2, 3]);
/// # Ok::<(), redis_runtime::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<E> {
    items: Vec<E>,
    skipped: Vec<Skipped>,
}

impl<E> Listing<E> {
    /// A listing of `items`, with `skipped` passed over.
    pub fn new(items: Vec<E>, skipped: Vec<Skipped>) -> Self {
        Self { items, skipped }
    }

    /// The entities that could not be decoded, by key, in the order met.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The decoded entities, dropping the report of skipped ones.
    pub fn into_vec(self) -> Vec<E> {
        self.items
    }

    /// All or nothing: the entities, or a `DECODE` error naming the first
    /// undecodable entity's key and field.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when any entity was skipped.
    pub fn strict(self) -> Result<Vec<E>> {
        match self.skipped.into_iter().next() {
            None => Ok(self.items),
            Some(first) => Err(first.into_decode_error()),
        }
    }
}

impl Skipped {
    /// This skipped entity as the `DECODE` error a strict read reports.
    fn into_decode_error(self) -> Error {
        let (field, reason) = match self.reason {
            super::SkipReason::Undecodable { field, reason } => (field, reason),
            other => ("*".to_owned(), format!("{other:?}")),
        };
        Error::Decode {
            context: Context::default(),
            key: self.key,
            field,
            reason,
        }
    }
}

impl<E> Deref for Listing<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.items
    }
}

impl<E> IntoIterator for Listing<E> {
    type Item = E;
    type IntoIter = std::vec::IntoIter<E>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, E> IntoIterator for &'a Listing<E> {
    type Item = &'a E;
    type IntoIter = std::slice::Iter<'a, E>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<E: PartialEq> PartialEq<Vec<E>> for Listing<E> {
    fn eq(&self, other: &Vec<E>) -> bool {
        self.items == *other
    }
}

impl<E: PartialEq, const N: usize> PartialEq<[E; N]> for Listing<E> {
    fn eq(&self, other: &[E; N]) -> bool {
        self.items == *other
    }
}
