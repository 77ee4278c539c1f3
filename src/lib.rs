//! offloadd: fast, safe, visible flow offload for Linux routers.
//!
//! The pipeline (DESIGN.md): `config` parses a source into one `Config`; `plan` turns it
//! and the present links into a `Desired` ruleset (pure); `nft` is the only module that
//! talks to nf_tables and applies a `Desired` in one batch; `daemon` wires it together.

pub mod check;
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod daemon;
pub mod link;
pub mod nft;
mod nlmsg;
pub mod plan;
pub mod publish;
pub mod report;
pub mod view;
