//! The gateway listener's client address: the `ConnectInfo` of the gateway's router. The
//! listener itself (timeouts, connection caps) is [`crate::listen`].
use std::net::SocketAddr;

/// The socket peer of a gateway request (the `ConnectInfo` of the gateway's router).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);
