//! The root admin key of the first start: its secret shown once on stdout, or, with
//! `serve --root-key-file PATH`, written to a new file of mode 0600 and never to stdout (where
//! a service manager's journal or a terminal's scroll-back would keep it).
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use portcullis_core::{ExposeSecret, request::NewAdminKey};
use portcullis_store::Store;

use crate::{Failure, output};

/// Where the root admin secret goes.
#[derive(Debug)]
pub enum Destination {
    Stdout,
    /// The file, already created (empty, mode 0600) before the key is.
    File(File, PathBuf),
}

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure::Usage(m.to_string())
}

/// Chooses the destination before the root key is created: with `file` on a first start (no
/// admin key yet), creates that file now, so that a file that exists already (or cannot be
/// written) stops the start before a secret exists that could not be kept.
pub async fn prepare(store: &dyn Store, file: Option<&Path>) -> Result<Destination, Failure> {
    let Some(path) = file else {
        return Ok(Destination::Stdout);
    };
    if store.count_admin_keys().await? > 0 {
        return Ok(Destination::Stdout);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let f = options.open(path).map_err(|e| {
        usage(format!(
            "--root-key-file {}: {e} (the file must not exist: it is created, never overwritten)",
            path.display()
        ))
    })?;
    Ok(Destination::File(f, path.to_owned()))
}

/// Hands the new root key's secret over (when one was created) to `to`.
pub fn deliver(to: Destination, root: Option<NewAdminKey>, data_dir: &Path) -> Result<(), Failure> {
    match (to, root) {
        (Destination::Stdout, Some(root)) => {
            output::print_root_key(&root.key.id, root.secret.expose_secret(), data_dir);
            Ok(())
        }
        (Destination::Stdout, None) => Ok(()),
        // Another process created the first admin key meanwhile: nothing to keep.
        (Destination::File(_, path), None) => {
            let _ = std::fs::remove_file(&path);
            Ok(())
        }
        (Destination::File(mut f, path), Some(root)) => {
            let written = f
                .write_all(format!("{}\n", root.secret.expose_secret()).as_bytes())
                .and_then(|()| f.sync_all());
            if let Err(e) = written {
                return Err(usage(format!(
                    "the root admin key {} was created, but its secret could not be written to \
                     {}: {e}. Revoke it and create another with `portcullis admin-key create`",
                    root.key.id,
                    path.display()
                )));
            }
            println!(
                "portcullis: first start, created the root admin key {}; its secret is in {} \
                 (mode 0600, shown nowhere else).",
                root.key.id,
                path.display()
            );
            Ok(())
        }
    }
}
