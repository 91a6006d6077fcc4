//! The data directory: the SQLite database, the pepper file, and first-start bootstrap.
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use portcullis_core::{
    ExposeSecret,
    clock::Clock,
    hash::Pepper,
    request::{CreateAdminKey, NewAdminKey},
};
use portcullis_sqlite::SqliteStore;
use portcullis_store::Store;

use portcullis_service::{Config, audit, ops};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "portcullis.db";
/// File name of the generated pepper inside the data directory.
pub const PEPPER_FILE: &str = "pepper";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pepper: {0}")]
    Pepper(String),
    #[error("store: {0}")]
    Store(#[from] portcullis_store::StoreError),
    #[error("{0}")]
    Op(#[from] ops::OpError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    pub store: Arc<SqliteStore>,
    pub pepper: Pepper,
}

/// Opens (creating when needed, mode 0700) the data directory: applies migrations and loads
/// or generates the pepper.
pub async fn open(config: &Config) -> Result<DataDir, DataDirError> {
    let dir = &config.data_dir;
    create_private_dir(dir)?;
    let pepper = load_pepper(config)?;
    let store = SqliteStore::open(&dir.join(DB_FILE)).await?;
    Ok(DataDir {
        store: Arc::new(store),
        pepper,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), DataDirError> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io(dir))
}

/// The pepper: from `pepper` (hex) in the config, or `pepper_file`, or `{data_dir}/pepper`,
/// generated (mode 0600) when that file does not exist yet.
fn load_pepper(config: &Config) -> Result<Pepper, DataDirError> {
    if let Some(hex) = &config.pepper {
        return Pepper::from_hex(hex).map_err(|e| DataDirError::Pepper(e.to_string()));
    }
    let path = config
        .pepper_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(PEPPER_FILE));
    if path.exists() {
        warn_if_readable_by_others(&path);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        return Pepper::from_hex(&text)
            .map_err(|e| DataDirError::Pepper(format!("{}: {e}", path.display())));
    }
    if config.pepper_file.is_some() {
        return Err(DataDirError::Pepper(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let (pepper, text) = Pepper::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path).map_err(io(&path))?;
    f.write_all(text.expose_secret().as_bytes())
        .map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    tracing::info!(path = %path.display(), "generated a new pepper");
    Ok(pepper)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the pepper file is readable by group or others; chmod 600 it");
        }
    }
}

/// On a store with no admin key at all, creates the root admin key (all admin scopes) and
/// returns it so the caller can show its secret once. The creation is recorded in `audit` with
/// actor `bootstrap`.
pub async fn ensure_root_admin(
    store: &dyn Store,
    pepper: &Pepper,
    clock: &dyn Clock,
    audit: &audit::AuditLog,
) -> Result<Option<NewAdminKey>, DataDirError> {
    if store.count_admin_keys().await? > 0 {
        return Ok(None);
    }
    let root = CreateAdminKey {
        name: "root".into(),
        tenant_id: None,
        scopes: Vec::new(),
    };
    let policy = portcullis_core::request::KeyPolicy::default();
    let ctx = ops::Ctx {
        actor: audit::BOOTSTRAP,
        audit,
        store,
        pepper,
        policy: &policy,
        now: clock.now(),
        cache: None,
        events: None,
    };
    Ok(Some(ops::create_admin_key(ctx, root).await?))
}
