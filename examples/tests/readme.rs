//! The README's code samples are compiled as examples (`math.rs` is the
//! module `readme_server` and `readme_client` share); this keeps the two copies identical, so the
//! README never shows code that does not build.

#[test]
fn readme_samples_are_the_compiled_examples() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    let blocks: Vec<&str> = readme
        .split("```rust\n")
        .skip(1)
        .map(|rest| rest.split("```").next().expect("closed code block"))
        .collect();
    let files = [
        "math.rs",
        "readme_server.rs",
        "readme_client.rs",
        "readme_dynamic.rs",
    ];
    assert_eq!(
        blocks.len(),
        files.len(),
        "the README has a service, a server, a client and a string-API sample"
    );
    for (block, file) in blocks.iter().zip(files) {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let code = std::fs::read_to_string(&path).expect("example file");
        assert_eq!(*block, code, "README sample differs from examples/{file}");
    }
}
