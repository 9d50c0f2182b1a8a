//! The README's promises: its curl examples give the answers it shows, and `.ci/run` runs the
//! test command of its Quick start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::Server;
use serde_json::Value;

/// (path, body, expected answer) of every `curl -s http://127.0.0.1:8180<path> -d '<body>'`
/// block followed by a ```json block.
fn curl_examples(readme: &str) -> Vec<(String, String, Value)> {
    let mut examples = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("```bash\ncurl -s http://127.0.0.1:8180") {
        let block = &rest[start + "```bash\ncurl -s http://127.0.0.1:8180".len()..];
        let end = block.find("\n```").unwrap();
        let command = &block[..end];
        let (path, body) = command.split_once(" -d '").unwrap();
        let body = body.strip_suffix('\'').unwrap();
        let after = &block[end + 4..];
        let json_start = after.find("```json\n").unwrap() + "```json\n".len();
        let json_end = after[json_start..].find("\n```").unwrap();
        let expected: Value = serde_json::from_str(&after[json_start..json_start + json_end]).unwrap();
        examples.push((path.to_owned(), body.to_owned(), expected));
        rest = &after[json_start..];
    }
    examples
}

/// Every `revision` value replaced by the same placeholder: it changes with every policy edit.
fn without_revisions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, nested) in map.iter_mut() {
                if key == "revision" {
                    *nested = Value::String("<revision>".into());
                } else {
                    without_revisions(nested);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(without_revisions),
        _ => {}
    }
}

#[test]
fn curl_examples_give_the_documented_answers() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let examples = curl_examples(&readme);
    assert!(examples.len() >= 4, "found only {} curl examples", examples.len());
    let server = Server::start(&[]);
    for (path, body, mut expected) in examples {
        // The shell unescapes nothing inside single quotes: the body is sent as written.
        let (status, mut got) = server.post_raw(&path, &body);
        assert_eq!(status, 200, "{path}: {got}");
        without_revisions(&mut got);
        without_revisions(&mut expected);
        assert_eq!(got, expected, "README example for {path} with body {body}");
    }
}

#[test]
fn ci_runs_the_quick_start_test_command() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(common::root().join(".ci/run")).unwrap();
    let quick_start = &readme[readme.find("## Quick start").unwrap()..readme.find("## Try it").unwrap()];
    let commands: Vec<&str> = quick_start
        .split("```bash\n")
        .skip(1)
        .map(|block| block.split("\n```").next().unwrap().trim())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --release -- serve", "cargo test --locked"],
        "two commands"
    );
    assert!(
        ci.lines().any(|line| line.trim() == commands[1]),
        ".ci/run must run `{}`",
        commands[1]
    );
}
