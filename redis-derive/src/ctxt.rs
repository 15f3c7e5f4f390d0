//! Collects every error found while reading attributes, so one compile
//! reports all of them instead of stopping at the first.

use std::cell::RefCell;

use quote::ToTokens;

/// The errors of one derive. It must be emptied with [`Ctxt::check`]
/// before it is dropped: a path that forgot to would silently compile a
/// wrong attribute, so dropping it unchecked panics instead.
pub(crate) struct Ctxt {
    /// `None` once `check` has taken the errors.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Default for Ctxt {
    fn default() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }
}

impl Ctxt {
    /// Records an error pointing at `tokens`.
    pub(crate) fn error_spanned_by<T: ToTokens, M: std::fmt::Display>(
        &self,
        tokens: T,
        message: M,
    ) {
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error syn already built.
    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after check()")
            .push(error);
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.errors
            .borrow()
            .as_ref()
            .is_some_and(|errors| !errors.is_empty())
    }

    /// Takes all errors, combined into one, or `Ok` if there were none.
    pub(crate) fn check(self) -> Result<(), syn::Error> {
        let errors = self.errors.borrow_mut().take();
        // `check` takes `self`, so the errors are always still there.
        let mut errors = errors.unwrap_or_default().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("Ctxt dropped without check(): its errors were never reported");
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::Ctxt;

    #[test]
    #[should_panic(expected = "Ctxt dropped without check()")]
    fn dropping_unchecked_panics() {
        let cx = Ctxt::default();
        cx.error_spanned_by(quote!(a), "never reported");
    }

    #[test]
    fn check_takes_every_error_in_order() {
        let cx = Ctxt::default();
        cx.error_spanned_by(quote!(a), "first");
        cx.error_spanned_by(quote!(b), "second");
        let Err(errors) = cx.check() else {
            panic!("two errors were recorded");
        };
        let messages: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn check_without_errors_is_ok() {
        assert!(Ctxt::default().check().is_ok());
    }
}
