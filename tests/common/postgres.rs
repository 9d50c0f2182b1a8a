//! A database of its own for each test on the local PostgreSQL (127.0.0.1:5432, trust auth,
//! database `test`; `ZENML_AUTHZ_TEST_POSTGRES` names another server's admin URL), dropped when
//! the guard is, also when the test fails.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The admin connection's URL: it creates and drops the test databases.
pub fn admin_url() -> String {
    std::env::var("ZENML_AUTHZ_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh database, dropped with the guard.
pub struct TestDatabase {
    /// Its name (unique: the process id and a counter).
    pub name: String,
    /// Its URL.
    pub url: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl TestDatabase {
    /// Creates `zenml_authz_test_<pid>_<n>` (dropping a leftover of that name first).
    pub fn create() -> Self {
        let name = format!(
            "zenml_authz_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name}"
        ))
        .unwrap_or_else(|error| panic!("creating {name} on {}: {error}", admin_url()));
        let base = admin_url();
        let server = base.rsplit_once('/').map_or(base.as_str(), |(server, _)| server);
        let url = format!("{server}/{name}");
        TestDatabase { name, url }
    }

    /// Runs `sql` in this database.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        run(&self.url, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Err(error) = admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("dropping test database {}: {error}", self.name);
        }
    }
}

fn admin(sql: &str) -> Result<(), String> {
    run(&admin_url(), sql)
}

/// Runs `sql` in the database at `url`.
pub fn execute(url: &str, sql: &str) -> Result<(), String> {
    run(url, sql)
}

/// The one integer `sql` answers in the database at `url`.
pub fn query_i64(url: &str, sql: &str) -> i64 {
    query(url, sql)[0].get(0)
}

/// Every row `sql` answers in the database at `url`.
pub fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        let rows = client.query(sql, &[]).await.unwrap();
        drop(client);
        let _ = driver.await;
        rows
    })
}

/// A token secret file, the same for every replica of a test (as a mounted Secret is).
pub fn token_secret() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "replicas-test-token-secret-0123456789abcdef").unwrap();
    file
}

/// The flags of a replica on the database at `url` signing tokens with `secret`, whose share
/// changes arrive by notification only (a day between resyncs: the safety net stays out).
pub fn replica_flags(url: &str, secret: &tempfile::NamedTempFile) -> Vec<String> {
    [
        "--shares-db",
        url,
        "--token-secret-file",
        secret.path().to_str().unwrap(),
        "--shares-resync-secs",
        "86400",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs `sql` (statements separated by `;`, no transaction) on a connection of its own.
fn run(url: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|error| error.to_string())?;
        let driver = tokio::spawn(connection);
        for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
            client
                .batch_execute(statement)
                .await
                .map_err(|error| format!("{error:?}"))?;
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    })
}

/// A PostgreSQL server of the test's own (`initdb` in a temporary directory, its own port), so
/// that a test can stop and start it without disturbing the shared one. Stopped and removed
/// with the guard. As root, its commands run as the `postgres` user (PostgreSQL refuses root).
pub struct PrivateServer {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PrivateServer {
    /// Creates the cluster and starts the server.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if is_root() {
            let status = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateServer { dir, bin, port };
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            ],
        );
        server.resume();
        server
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (`-m fast`: clients are disconnected, as in a restart), waiting until it is down.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts it again on the same port, waiting until it accepts connections.
    pub fn resume(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            std::process::Command::new(&program)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&program).args(args).output()
        };
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The newest PostgreSQL's server programs (`ZENML_AUTHZ_TEST_POSTGRES_BIN` names others).
fn postgres_bin() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("ZENML_AUTHZ_TEST_POSTGRES_BIN") {
        return bin.into();
    }
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs under /usr/lib/postgresql (or ZENML_AUTHZ_TEST_POSTGRES_BIN)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().expect("an initdb under /usr/lib/postgresql/*/bin")
}
