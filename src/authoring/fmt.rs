//! `zenml-authz fmt`: Cedar's own formatter over `.cedar` files; a file whose comments it would
//! lose is left alone, and `--check` lists the files it would change.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::PolicySet;

use super::CommandOutput;
use crate::cli::{FmtArgs, exit};
use crate::error::LoadError;

/// `*.cedar` files under each path (a file named explicitly is taken whatever its name),
/// sorted, hidden entries skipped, symlinks followed; and the paths that have none.
fn cedar_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        if !path.is_dir() {
            errors.push(LoadError::file(path, "no such file or directory"));
            continue;
        }
        let before = files.len();
        let walker = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
            });
        for entry in walker {
            match entry {
                Ok(entry)
                    if entry.file_type().is_file()
                        && entry.file_name().to_string_lossy().ends_with(".cedar") =>
                {
                    files.push(entry.path().to_path_buf());
                }
                Ok(_) => {}
                Err(error) => {
                    let at = error.path().unwrap_or(path).to_path_buf();
                    errors.push(LoadError::file(&at, format!("cannot read: {error}")));
                }
            }
        }
        if files.len() == before {
            errors.push(LoadError::file(path, "no .cedar files found"));
        }
    }
    let mut seen = HashSet::new();
    files.retain(|file| seen.insert(file.clone()));
    (files, errors)
}

/// The `//` comments of Cedar text (string literals skipped), each trimmed, in order.
fn comments(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek().is_some_and(|(_, next)| *next == '/') => {
                let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
                found.push(text[at..end].trim());
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    found
}

/// Cedar's formatter attaches every comment to the policy after it, so a file's header (its
/// leading comment lines, set apart by a blank line) would run into the first policy's own
/// comment. Keeps that blank line: the header stays a header.
fn keep_header(input: &str, mut formatted: String) -> String {
    let lines: Vec<&str> = input.lines().collect();
    let header = lines
        .iter()
        .take_while(|line| line.trim_start().starts_with("//"))
        .count();
    if header == 0 || lines.get(header).is_none_or(|line| !line.trim().is_empty()) {
        return formatted;
    }
    let same_header = formatted
        .lines()
        .take(header)
        .map(str::trim)
        .eq(lines[..header].iter().map(|line| line.trim()));
    let next = formatted.lines().nth(header);
    if same_header && next.is_some_and(|line| !line.trim().is_empty()) {
        let at: usize = formatted.lines().take(header).map(|line| line.len() + 1).sum();
        formatted.insert(at, '\n');
    }
    formatted
}

/// Formats one file's text: `Ok(None)` when it is already formatted (or has no policies),
/// `Ok(Some(text))` when formatting changes it, `Err` when it cannot or must not be formatted.
pub fn format_cedar(
    path: &Path,
    text: &str,
    config: &cedar_policy_formatter::Config,
) -> Result<Option<String>, LoadError> {
    // Cedar's own parser first: its errors carry a place.
    let parsed = PolicySet::from_str(text).map_err(|errors| {
        let first = errors.iter().next();
        let message = first.map_or_else(|| errors.to_string(), |e| e.to_string());
        let offset = first
            .and_then(miette::Diagnostic::labels)
            .and_then(|mut labels| labels.next())
            .map(|label| label.offset());
        match offset {
            Some(offset) => LoadError::at_offset(path, text, offset, format!("cannot format: {message}")),
            None => LoadError::file(path, format!("cannot format: {message}")),
        }
    })?;
    if parsed.policies().next().is_none() && parsed.templates().next().is_none() {
        return Ok(None);
    }
    let pretty = |input: &str| {
        cedar_policy_formatter::policies_str_to_pretty(input, config)
            .map(|formatted| keep_header(input, formatted))
            .map_err(|error| LoadError::file(path, format!("cannot format: {error}")))
    };
    let formatted = pretty(text)?;
    if pretty(&formatted)? != formatted {
        return Err(LoadError::file(
            path,
            "not formatted: Cedar's formatter gives a different text when run again on this file",
        ));
    }
    if comments(text) != comments(&formatted) {
        return Err(LoadError::file(
            path,
            "not formatted: Cedar's formatter would drop or change comments in this file; format it by hand",
        ));
    }
    Ok((formatted != text).then_some(formatted))
}

/// Replaces `path`'s contents through a hidden temporary file and a rename, so that a watching
/// sidecar never reads half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = target.with_file_name(format!(".{name}.zenml-authz-fmt"));
    std::fs::write(&temp, text)?;
    if let Ok(metadata) = std::fs::metadata(&target) {
        let _ = std::fs::set_permissions(&temp, metadata.permissions());
    }
    std::fs::rename(&temp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// `zenml-authz fmt`: format `.cedar` files with Cedar's formatter, or with `--check` list the
/// files it would change.
pub fn fmt(args: &FmtArgs) -> CommandOutput {
    let paths = if args.paths.is_empty() {
        vec![args.sources.policies.clone()]
    } else {
        args.paths.clone()
    };
    let config = cedar_policy_formatter::Config {
        line_width: args.line_width,
        indent_width: isize::try_from(args.indent_width).unwrap_or(2),
    };
    let (files, mut errors) = cedar_files(&paths);
    let mut out = String::new();
    let mut changed = 0;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                errors.push(LoadError::file(file, format!("cannot read: {error}")));
                continue;
            }
        };
        match format_cedar(file, &text, &config) {
            Ok(None) => {}
            Ok(Some(_)) if args.check => {
                changed += 1;
                let _ = writeln!(out, "would reformat {}", file.display());
            }
            Ok(Some(formatted)) => match write_atomically(file, &formatted) {
                Ok(()) => {
                    changed += 1;
                    let _ = writeln!(out, "formatted {}", file.display());
                }
                Err(error) => errors.push(LoadError::file(file, format!("cannot write: {error}"))),
            },
            Err(error) => errors.push(error),
        }
    }
    let verb = if args.check {
        "would be reformatted"
    } else {
        "reformatted"
    };
    let _ = writeln!(out, "{changed} of {} file(s) {verb}", files.len());
    let mut stderr = String::new();
    for error in &errors {
        let _ = writeln!(stderr, "error: {error}");
    }
    let code = if !errors.is_empty() {
        exit::ERROR
    } else if args.check && changed > 0 {
        exit::UNFORMATTED
    } else {
        exit::OK
    };
    CommandOutput {
        stdout: out,
        stderr,
        code,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn comments_skip_string_literals() {
        let text = "// a\npermit (principal, action, resource) when { \"// not\" == \"x\\\"//\" }; // b\n";
        assert_eq!(comments(text), ["// a", "// b"]);
    }

    #[test]
    fn formatting_is_idempotent_and_keeps_comments() {
        let config = cedar_policy_formatter::Config::default();
        let text = "// header\n@id(\"x\") permit(principal,action  ,resource) // trailing\nwhen { true };\n";
        let once = format_cedar(Path::new("x.cedar"), text, &config)
            .unwrap()
            .unwrap();
        assert_eq!(format_cedar(Path::new("x.cedar"), &once, &config).unwrap(), None);
        assert_eq!(comments(&once), comments(text));
        assert!(once.contains("@id(\"x\")"), "{once}");
    }

    #[test]
    fn a_header_comment_stays_apart_from_the_first_policy() {
        let config = cedar_policy_formatter::Config::default();
        let text = "// Header of the file.\n// Second line.\n\n// The policy.\n@id(\"x\") permit(principal,action,resource);\n";
        let once = format_cedar(Path::new("x.cedar"), text, &config)
            .unwrap()
            .unwrap();
        assert!(
            once.starts_with("// Header of the file.\n// Second line.\n\n// The policy.\n@id(\"x\")"),
            "{once}"
        );
        assert_eq!(format_cedar(Path::new("x.cedar"), &once, &config).unwrap(), None);
        // Without a blank line, the comment belongs to the policy, and stays with it.
        let text = "// The policy.\n@id(\"x\") permit(principal,action,resource);\n";
        let once = format_cedar(Path::new("x.cedar"), text, &config)
            .unwrap()
            .unwrap();
        assert!(once.starts_with("// The policy.\n@id(\"x\")"), "{once}");
    }

    #[test]
    fn comment_only_files_are_left_alone() {
        let config = cedar_policy_formatter::Config::default();
        assert_eq!(
            format_cedar(Path::new("x.cedar"), "// nothing yet\n", &config).unwrap(),
            None
        );
        assert_eq!(format_cedar(Path::new("x.cedar"), "", &config).unwrap(), None);
    }

    #[test]
    fn unparseable_files_are_errors_with_a_place() {
        let config = cedar_policy_formatter::Config::default();
        let error = format_cedar(
            Path::new("x.cedar"),
            "permit (principal, action resource);\n",
            &config,
        )
        .unwrap_err();
        assert_eq!(error.line, Some(1), "{error}");
        assert!(error.message.starts_with("cannot format: "), "{error}");
    }
}
