//! Shared helpers of the integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod gateway;
pub mod upstream;
