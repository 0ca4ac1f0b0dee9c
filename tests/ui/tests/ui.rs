//! Compile-fail tests of `#[cloud_run_client]` and `include_proto!`: every mistake is one
//! compile error at the right span, with what to write instead (`fail/*.stderr`). Most cases
//! then use the struct (`fail/uses/*.rs`: `new()`, the constants, RPC methods through
//! `Deref`): the expansion is still there, so that adds no error. Where one file holds several
//! structs, each has its own mistake and its own error.
//!
//! What compiles is tested in `tests/pass.rs`, as ordinary tests.
//!
//! Regenerate the expected output after a deliberate change with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    // The cases include the bookstore this package's build script generated, as a user crate
    // includes its own: trybuild builds them without a build script, so it passes this
    // package's `OUT_DIR` on to their compiler through the environment.
    // SAFETY: this binary's only test sets it before starting anything that reads the
    // environment; the harness's main thread only waits for it.
    unsafe { std::env::set_var("OUT_DIR", env!("OUT_DIR")) };
    trybuild::TestCases::new().compile_fail("fail/*.rs");
}
