//! `zenml-authz zenml-projects`: the directory's projects of one workspace next to the projects
//! of the ZenML server that is that workspace, matched by name. ZenML generates project ids (a
//! client cannot choose one), so a project role is bound by creating the project in ZenML and
//! then letting this command copy its id into the directory:
//!
//! ```text
//! PROJECT  ZENML ID                              DIRECTORY ID                          STATE
//! churn    e1c2695c-2f63-495c-a668-6b986b74218b  dccff1d9-afc7-4c24-b5e8-e887447c69c0  id differs
//! default  0b9ebfad-71b7-4aea-a675-167358e2af64  -                                     only in ZenML
//! ```
//!
//! `--write` rewrites the `id:` of each project whose id differs (and every binding's `project:`
//! that names it by that id) through [`directory::replace_project_ids`]: every other byte of the
//! file stays. The result is loaded with the other sources before it replaces the file (a temp
//! file beside it, then a rename), so a running sidecar's watcher reloads a file that is valid.
//! Projects only in ZenML are not added: a snippet to paste is printed instead (where in the
//! file, with which comments, is the editor's choice). Projects only in the directory, or whose
//! id is ZenML's under another name, are reported and left alone.
//!
//! [`directory::replace_project_ids`]: crate::directory::replace_project_ids

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CommandOutput, load, zenml_decider};
use crate::cli::{ZenmlProjectsArgs, exit};
use crate::directory::{Directory, Workspace, replace_project_ids};
use crate::snapshot::Sources;
use crate::zenml_client::{self, Client};

/// How a project of the workspace compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The same name and id on both sides.
    Matches,
    /// The same name, another id: `--write` copies ZenML's.
    IdDiffers,
    /// The directory's id is ZenML's id of a project with another name (renamed in ZenML?).
    NameDiffers {
        /// The name in ZenML.
        zenml_name: String,
    },
    /// In ZenML only: no role can be bound on it yet.
    OnlyInZenml,
    /// In the directory only: not created in ZenML yet, deleted there, or not visible to the
    /// API key's user.
    OnlyInDirectory,
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The project's name (the directory's when both have one).
    pub name: String,
    /// Its id in ZenML.
    pub zenml_id: Option<String>,
    /// Its id in the directory.
    pub directory_id: Option<String>,
    /// How they compare.
    pub state: State,
}

/// `zenml-authz zenml-projects`.
pub fn zenml_projects(args: &ZenmlProjectsArgs) -> CommandOutput {
    let api_key = match args.api_key() {
        Ok(key) => key,
        Err((message, code)) => {
            return CommandOutput {
                code,
                ..CommandOutput::error(message)
            };
        }
    };
    let client = match Client::new(&args.zenml_url, Duration::from_secs(args.timeout_secs)) {
        Ok(client) => client,
        Err(error) => {
            return CommandOutput {
                code: exit::USAGE,
                ..CommandOutput::error(error)
            };
        }
    };
    let sources = args.sources.sources();
    let snapshot = match load(&sources) {
        Ok(snapshot) => snapshot,
        Err(output) => return output,
    };
    let warning = if client.is_plain_http_remote() {
        format!(
            "warning: `{}` is plain http to another host: the API key crosses the network unencrypted\n",
            client.url()
        )
    } else {
        String::new()
    };
    let run = || -> Result<CommandOutput, String> {
        let directory = zenml_decider(&snapshot)?.directory();
        sync(directory, &sources, client, &api_key, args)
    };
    let mut output = run().unwrap_or_else(CommandOutput::error);
    output.stderr.insert_str(0, &warning);
    output
}

/// Every project of `workspace`, in ZenML and in the directory, matched by name, then by id;
/// sorted by name.
pub fn compare(directory: &Directory, workspace: &Workspace, zenml: &[zenml_client::Project]) -> Vec<Row> {
    let ours = directory.projects_in(&workspace.named.id);
    let mut theirs: Vec<Option<&zenml_client::Project>> = zenml.iter().map(Some).collect();
    let mut take = |found: &dyn Fn(&zenml_client::Project) -> bool| {
        let slot = theirs.iter_mut().find(|slot| slot.is_some_and(found))?;
        slot.take()
    };
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for project in ours {
        let named = &project.named;
        match take(&|z| z.name == named.name) {
            Some(z) => rows.push(Row {
                name: named.name.clone(),
                zenml_id: Some(z.id.clone()),
                directory_id: Some(named.id.clone()),
                state: if z.id == named.id {
                    State::Matches
                } else {
                    State::IdDiffers
                },
            }),
            None => unmatched.push(named),
        }
    }
    for named in unmatched {
        let (zenml_id, state) = match take(&|z| z.id == named.id) {
            Some(z) => (
                Some(z.id.clone()),
                State::NameDiffers {
                    zenml_name: z.name.clone(),
                },
            ),
            None => (None, State::OnlyInDirectory),
        };
        rows.push(Row {
            name: named.name.clone(),
            zenml_id,
            directory_id: Some(named.id.clone()),
            state,
        });
    }
    rows.extend(theirs.into_iter().flatten().map(|z| Row {
        name: z.name.clone(),
        zenml_id: Some(z.id.clone()),
        directory_id: None,
        state: State::OnlyInZenml,
    }));
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// Asks the server, compares, prints, and with `--write` rewrites the directory file.
fn sync(
    directory: &Directory,
    sources: &Sources,
    mut client: Client,
    api_key: &str,
    args: &ZenmlProjectsArgs,
) -> Result<CommandOutput, String> {
    let info = client.info().map_err(|error| error.to_string())?;
    let workspace = server_workspace(directory, args.workspace.as_deref(), &info)?;
    client.login(api_key).map_err(|error| error.to_string())?;
    let zenml = client.projects().map_err(|error| error.to_string())?;
    let rows = compare(directory, workspace, &zenml);

    let mut out = String::new();
    let version = if info.version.is_empty() {
        String::new()
    } else {
        format!(" {}", info.version)
    };
    let _ = writeln!(
        out,
        "workspace {} ({}): ZenML{version} at {}",
        workspace.named.name,
        workspace.named.id,
        client.url()
    );
    out.push_str(&table(&rows));
    let changes: BTreeMap<String, String> = rows
        .iter()
        .filter(|row| row.state == State::IdDiffers)
        .filter_map(|row| Some((row.directory_id.clone()?, row.zenml_id.clone()?)))
        .collect();
    let directory_file = sources.directory.display();
    let mut fixed = false;
    if !changes.is_empty() {
        let names = names_of(&rows, &State::IdDiffers);
        if args.write {
            let written =
                check_new_ids(directory, &changes).and_then(|()| write_directory(sources, &changes));
            if let Err(message) = written {
                // The table stays on stdout: it says what would have been written.
                return Ok(CommandOutput {
                    stdout: out,
                    ..CommandOutput::error(message)
                });
            }
            fixed = true;
            let _ = writeln!(
                out,
                "\nupdated {directory_file}: the id of {} project(s) ({names}) is now ZenML's",
                changes.len()
            );
        } else {
            let _ = writeln!(
                out,
                "\n{} project id(s) differ ({names}): `--write` puts ZenML's ids into {directory_file}",
                changes.len()
            );
        }
    }
    let only_zenml: Vec<&Row> = rows
        .iter()
        .filter(|row| row.state == State::OnlyInZenml)
        .collect();
    if !only_zenml.is_empty() {
        let _ = writeln!(
            out,
            "\nto bind roles on the projects only in ZenML, add them to `projects:` in {directory_file}:"
        );
        for row in only_zenml {
            let _ = writeln!(
                out,
                "  - id: {}\n    name: {}\n    workspace: {}",
                row.zenml_id.as_deref().unwrap_or_default(),
                yaml_scalar(&row.name),
                yaml_scalar(&workspace.named.name)
            );
        }
    }
    let unresolved = rows.iter().any(|row| match row.state {
        State::Matches | State::OnlyInZenml => false,
        State::IdDiffers => !fixed,
        State::NameDiffers { .. } | State::OnlyInDirectory => true,
    });
    let renamed: Vec<&str> = rows
        .iter()
        .filter(|row| matches!(row.state, State::NameDiffers { .. }))
        .map(|row| row.name.as_str())
        .collect();
    if !renamed.is_empty() {
        let _ = writeln!(
            out,
            "\nprojects renamed in ZenML ({}): give them ZenML's name in the directory (and in the \
             bindings that name them), or rename them back in ZenML",
            renamed.join(", ")
        );
    }
    if rows.iter().any(|row| row.state == State::OnlyInDirectory) {
        let _ = writeln!(
            out,
            "\nprojects only in the directory ({}): create them in ZenML (then run this again), or remove \
             their entries; the API key's user may also not be allowed to see them",
            names_of(&rows, &State::OnlyInDirectory)
        );
    }
    Ok(CommandOutput {
        stdout: out,
        stderr: String::new(),
        code: if unresolved { exit::DIFFERENT } else { exit::OK },
    })
}

/// The directory's workspace the server is: `--workspace`, which must not be another workspace
/// whose id is the server's; else the workspace with the server's id; else the only one.
fn server_workspace<'d>(
    directory: &'d Directory,
    given: Option<&str>,
    info: &zenml_client::ServerInfo,
) -> Result<&'d Workspace, String> {
    let by_server_id = directory.workspaces.get(&info.id);
    if let Some(key) = given {
        let workspace = directory
            .find_workspace(key)
            .ok_or_else(|| format!("unknown workspace `{key}`"))?;
        return match by_server_id {
            Some(other) if other.named.id != workspace.named.id => Err(format!(
                "the ZenML server's id `{}` is workspace `{}`'s, not `{}`'s: wrong server or wrong `--workspace`",
                info.id, other.named.name, workspace.named.name
            )),
            _ => Ok(workspace),
        };
    }
    if let Some(workspace) = by_server_id {
        return Ok(workspace);
    }
    let mut all = directory.workspaces.values();
    match (all.next(), all.next()) {
        (Some(only), None) => Ok(only),
        (None, _) => Err("the directory has no workspaces".into()),
        (Some(_), Some(_)) => Err(format!(
            "the ZenML server's id `{}` is no workspace's id in the directory: name the workspace with `--workspace`",
            info.id
        )),
    }
}

/// Refuses to give a project an id another directory project keeps.
fn check_new_ids(directory: &Directory, changes: &BTreeMap<String, String>) -> Result<(), String> {
    for (old, new) in changes {
        if let Some(holder) = directory.projects.get(new)
            && !changes.contains_key(new)
        {
            let name = directory
                .projects
                .get(old)
                .map_or(old.as_str(), |p| p.named.name.as_str());
            return Err(format!(
                "cannot give project `{name}` ZenML's id `{new}`: the directory's project `{}` has it; \
                 nothing was written",
                holder.named.name
            ));
        }
    }
    Ok(())
}

/// Rewrites the directory file's project ids: loaded with the other sources from a temp file
/// beside it, then renamed over it (a symlink's target is replaced, the link kept).
fn write_directory(sources: &Sources, changes: &BTreeMap<String, String>) -> Result<(), String> {
    let given = &sources.directory;
    let target = std::fs::canonicalize(given)
        .map_err(|error| format!("directory file `{}`: {error}", given.display()))?;
    let text = std::fs::read_to_string(&target)
        .map_err(|error| format!("directory file `{}`: {error}", given.display()))?;
    let rewritten = replace_project_ids(given, &text, changes).map_err(|error| error.to_string())?;
    let temp = temp_beside(&target);
    let written = write_new(&temp, &target, rewritten.as_bytes())
        .map_err(|error| format!("cannot write `{}`: {error}", temp.display()));
    let checked = written.and_then(|()| {
        let check = Sources {
            directory: temp.clone(),
            ..sources.clone()
        };
        crate::snapshot::load(&check).map(drop).map_err(|errors| {
            // Placed in the file the reader knows, not the temp file.
            let (temp_name, file_name) = (temp.display().to_string(), given.display().to_string());
            let list: Vec<String> = errors
                .iter()
                .map(|error| error.to_string().replace(&temp_name, &file_name))
                .collect();
            format!(
                "the rewritten directory would not load, so `{}` is unchanged: {}",
                given.display(),
                list.join("; ")
            )
        })
    });
    let renamed = checked.and_then(|()| {
        std::fs::rename(&temp, &target)
            .map_err(|error| format!("cannot replace `{}`: {error}", target.display()))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    renamed
}

/// `.<name>.zenml-projects-<pid>.tmp` in the file's folder: hidden (policy discovery skips it)
/// and on the same file system (the rename is atomic).
fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "directory".into(), |name| name.to_string_lossy());
    target.with_file_name(format!(".{name}.zenml-projects-{}.tmp", std::process::id()))
}

/// Writes a new file with the permissions of `like`, synced to disk.
fn write_new(path: &Path, like: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    if let Ok(metadata) = std::fs::metadata(like) {
        file.set_permissions(metadata.permissions())?;
    }
    file.sync_all()
}

/// The rows as an aligned table with a header.
fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            [
                row.name.clone(),
                row.zenml_id.clone().unwrap_or_else(|| "-".into()),
                row.directory_id.clone().unwrap_or_else(|| "-".into()),
                describe(&row.state),
            ]
        })
        .collect();
    let header = ["PROJECT", "ZENML ID", "DIRECTORY ID", "STATE"].map(str::to_owned);
    let mut widths = [0; 3];
    for line in std::iter::once(&header).chain(&cells) {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&cells) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            line[0],
            line[1],
            line[2],
            line[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out
}

fn describe(state: &State) -> String {
    match state {
        State::Matches => "matches".into(),
        State::IdDiffers => "id differs".into(),
        State::NameDiffers { zenml_name } => format!("name differs (`{zenml_name}` in ZenML)"),
        State::OnlyInZenml => "only in ZenML".into(),
        State::OnlyInDirectory => "only in the directory".into(),
    }
}

/// The names of the rows in `state`, comma-separated.
fn names_of(rows: &[Row], state: &State) -> String {
    let names: Vec<&str> = rows
        .iter()
        .filter(|row| row.state == *state)
        .map(|row| row.name.as_str())
        .collect();
    names.join(", ")
}

/// A name as a YAML scalar: plain when that is unambiguous, else double-quoted (JSON's
/// escaping is YAML's).
fn yaml_scalar(text: &str) -> String {
    let plain = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric() || first == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && text.parse::<f64>().is_err();
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}
