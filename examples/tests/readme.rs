//! The README's code samples are compiled as the `readme_server` and
//! `readme_client` examples; this keeps the two copies identical, so the
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
    assert_eq!(
        blocks.len(),
        2,
        "the README has a server and a client sample"
    );
    for (block, file) in blocks.iter().zip(["readme_server.rs", "readme_client.rs"]) {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let code = std::fs::read_to_string(&path).expect("example file");
        assert_eq!(*block, code, "README sample differs from examples/{file}");
    }
}
