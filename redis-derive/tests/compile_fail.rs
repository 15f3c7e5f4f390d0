//! Compile-fail cases: every misuse of the derives, one per file under
//! `tests/ui/`, with the exact diagnostics checked in next to it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
