//! Load errors: every problem found while reading schemas, policies and the directory, each
//! with the file, line and column it comes from.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the policy sources. `Display` gives `path:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file (or directory) the problem is in.
    pub path: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, in Cedar's words where Cedar found it.
    pub message: String,
}

impl LoadError {
    /// A problem with the whole file (or a missing file).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a byte offset of `text`, the contents of `path`.
    pub fn at_offset(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(text, offset);
        Self {
            path: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// A problem at a known line and column.
    pub fn at_line(path: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based (line, column) of a byte offset; the column counts characters.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Cedar's errors carry their place as miette labels: turn one diagnostic into load errors at
/// its first label (or at the file when it has none), with the help text appended.
pub fn from_diagnostic(path: &Path, text: &str, diagnostic: &dyn miette::Diagnostic) -> LoadError {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    match offset {
        Some(offset) if offset <= text.len() => LoadError::at_offset(path, text, offset, message),
        _ => LoadError::file(path, message),
    }
}

/// An error and its sources on one line, `outer: inner: innermost` (Cedar puts the useful part,
/// which entity and which attribute, in the sources), with repeated parts dropped.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = next {
        let text = current
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "ab\ncd\nef";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (3, 2));
        assert_eq!(line_col(text, 100), (3, 3));
    }

    #[test]
    fn display_has_path_line_column() {
        let error = LoadError::at_line(Path::new("policies/a.cedar"), 3, 7, "unexpected token");
        assert_eq!(error.to_string(), "policies/a.cedar:3:7: unexpected token");
        let error = LoadError::file(Path::new("schemas"), "no schema files");
        assert_eq!(error.to_string(), "schemas: no schema files");
    }
}
