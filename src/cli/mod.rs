//! The commands that need more than a few lines: the player and the handoff controller.

pub mod pair;
pub mod play;
pub mod transfer;
