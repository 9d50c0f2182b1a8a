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
