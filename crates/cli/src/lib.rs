//! portcullis: the binary's library: the one place that chooses and opens the backends
//! ([`backends`], [`datadir`]) that the server runs on.
#![forbid(unsafe_code)]

pub mod backends;
pub mod datadir;
