//! The commands that need more than a few lines: the player and the handoff controller.

pub mod play;
pub mod transfer;
pub mod pair;
