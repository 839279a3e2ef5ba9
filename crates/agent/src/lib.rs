//! The node agent. It registers its node, then reconciles: the control plane says
//! which runs the node should hold (desired), the [`runtime::ContainerRuntime`] says
//! which containers exist and how they are doing (observed), and the agent starts,
//! stops and reports until the two agree. It never decides placement.
//!
//! **Architecture invariant:** the agent only ever initiates connections to the
//! control plane (nodes may sit behind NAT), through the same signed client users
//! run, with a key of the `node` preset.

pub mod agent;
pub mod docker;
pub mod fake;
pub mod host;
pub mod inventory;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod runtime;
pub mod state;

pub use agent::{Agent, AgentConfig};
