//! The mistakes users make with `#[drpc::service]`, each a compile error
//! that says what to write instead (the `.stderr` files beside the cases).

#[test]
fn service_mistakes_are_clear_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
