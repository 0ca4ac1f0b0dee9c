//! Compile tests of `#[cloud_run_client]`: every option compiles (`ui/pass`), and every mistake
//! is one compile error at the right span, with what to write instead (`ui/fail/*.stderr`).
//! The `ui/fail/usable_after_*` cases use the struct after the mistake (`new()`, the
//! constants, RPC methods through `Deref`): the expansion is still there, so they add none.
//!
//! Regenerate the expected output after a deliberate change with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
