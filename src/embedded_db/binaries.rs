//! Finding the PostgreSQL server programs.

use std::path::{Path, PathBuf};

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

const NEEDED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Shown when no PostgreSQL server programs can be found.
pub const HOW_TO_INSTALL: &str = "PostgreSQL server programs (initdb, pg_ctl, postgres) were not \
found on PATH, in /usr/lib/postgresql/*/bin or in GATEWAY_PG_BIN. Install PostgreSQL \
(Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; macOS: \
`brew install postgresql`), point GATEWAY_PG_BIN at its bin directory, or set \
DATABASE_URL to use an existing PostgreSQL server.";

impl PgBinaries {
    /// Looks in `explicit` if given, else on PATH, else in `/usr/lib/postgresql/*/bin`
    /// (newest version first).
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(dir) = explicit {
            return if has_all(dir) {
                Ok(Self {
                    dir: dir.to_path_buf(),
                })
            } else {
                Err(anyhow::anyhow!(
                    "GATEWAY_PG_BIN={} does not contain initdb, pg_ctl and postgres",
                    dir.display()
                ))
            };
        }
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        for dir in on_path {
            if has_all(&dir) {
                // Follow symlinks (e.g. /usr/local/bin/pg_ctl) to the real install.
                let real = std::fs::canonicalize(dir.join("pg_ctl"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_all(d))
                    .unwrap_or(dir);
                return Ok(Self { dir: real });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, dir)| has_all(dir))
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        match versions.into_iter().next() {
            Some((_, dir)) => Ok(Self { dir }),
            None => Err(anyhow::anyhow!(HOW_TO_INSTALL)),
        }
    }

    /// The path of one program.
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory searched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn has_all(dir: &Path) -> bool {
    NEEDED.iter().all(|p| dir.join(p).is_file())
}
