//! The resume gate: what a player does with its buffers between the first buffer of a media
//! and the decision where to play it from.
//!
//! With `resume=auto` the element holds preroll: the first buffer waits on the streaming
//! thread (as a sink waits in preroll, upstream waiting with it) until the resume point is
//! known. Then the element seeks there, or lets that buffer play when there is nothing to
//! resume: no seek back, so a player that is stopped at that moment never meets a seek of
//! the element's own. A handoff target prerolls where the handoff needs it instead. Sans-IO
//! like the engine: the element reports what happens (`on_*`) and carries out the
//! [`Decision`]s; nothing here knows GStreamer or the network.
//!
//! Rules learnt from bugs:
//! - an EOS that arrives while the gate is closed is held back (a seek is on its way) and
//!   goes on when the gate opens without a flush; a flush drops it;
//! - a seek by the application while the decision is pending wins: the decision, when it
//!   comes, does nothing;
//! - an answer for an earlier media (a lookup that was slow) does nothing;
//! - dropping the held buffers and seeking back to them when there was nothing to resume
//!   raced an application stopping the pipeline: the seek of the element's own, sent as the
//!   pipeline went to NULL, could hang both (found by running the suite under load).

use super::ResumeFrom;

/// A live session moves on while the resuming player seeks: aim this far ahead of the live
/// position read (about what a seek and a preroll of a local file take).
pub const PULL_LEAD_NS: u64 = 40_000_000;

/// What to do with a resume point when media starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumeMode {
    /// Seek there at preroll, so that playing starts at the resume point.
    #[default]
    Auto,
    /// Offer it to the application, which may ask for the seek.
    Ask,
    /// Never resume.
    Off,
}

/// Whether buffers pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    /// Buffers pass.
    Open,
    /// The first buffer waits for the decision (later ones cannot arrive meanwhile).
    Hold,
    /// A seek is on its way: buffers are dropped until its flush.
    Seeking,
}

/// Why the gate asks for a seek.
#[derive(Debug, Clone, PartialEq)]
pub enum SeekFor {
    /// The resume point of `media_id`: after the seek, take the live session over when
    /// `from.live`, and tell the application that playback resumed.
    Resume { media_id: String, from: ResumeFrom },
    /// A handoff target prerolls where the handoff needs it (answer with `Prerolled`).
    Handoff,
}

/// What the element must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing.
    None,
    /// Look up where to resume; answer with [`Gate::on_lookup`] and this `generation`.
    Lookup { generation: u64 },
    /// Seek to `position_ns` (flushing); report a failure with [`Gate::on_seek_failed`].
    Seek { position_ns: u64, why: SeekFor },
    /// Offer the resume point of `media_id` to the application (`resume=ask`); buffers
    /// pass meanwhile.
    Offer { media_id: String, from: ResumeFrom },
    /// Buffers pass again; when `release_eos`, send on the EOS that was held back.
    Open { release_eos: bool },
}

/// The gate of one element.
#[derive(Debug, Clone)]
pub struct Gate {
    state: GateState,
    mode: ResumeMode,
    /// The media that started last.
    media_id: String,
    /// An EOS arrived while the gate was closed.
    eos_held: bool,
    /// The application seeked while the decision was pending.
    app_seeked: bool,
    /// A handoff is loading media: its start prerolls here.
    handoff_at: Option<u64>,
    /// Counts media starts; a lookup answers for one of them.
    generation: u64,
    /// The lookup still awaited, if any.
    awaiting: Option<u64>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            state: GateState::Open,
            mode: ResumeMode::Auto,
            media_id: String::new(),
            eos_held: false,
            app_seeked: false,
            handoff_at: None,
            generation: 0,
            awaiting: None,
        }
    }

    pub fn state(&self) -> GateState {
        self.state
    }

    /// Whether buffers pass now.
    pub fn passes(&self) -> bool {
        self.state == GateState::Open
    }

    /// Whether a handoff is loading media (its start will preroll, not resume).
    pub fn handoff_pending(&self) -> bool {
        self.handoff_at.is_some()
    }

    /// The element starts (READY to PAUSED) or stops: everything is forgotten but the
    /// handoff that is loading media (the player goes through READY to load it).
    pub fn reset(&mut self) {
        let handoff_at = self.handoff_at;
        let generation = self.generation;
        *self = Gate::new();
        self.handoff_at = handoff_at;
        self.generation = generation;
    }

    /// A handoff asked this player to load media: when it starts, preroll at `position_ns`.
    pub fn expect_handoff(&mut self, position_ns: u64) {
        self.handoff_at = Some(position_ns);
    }

    /// The handoff is over (played, failed, or the application could not load the media).
    pub fn cancel_handoff(&mut self) {
        self.handoff_at = None;
    }

    /// The first buffer of media `media_id`, at stream time `first_ns` (None: not
    /// timestamped).
    pub fn on_media_started(
        &mut self,
        media_id: &str,
        first_ns: Option<u64>,
        mode: ResumeMode,
    ) -> Decision {
        self.generation += 1;
        self.mode = mode;
        self.media_id = media_id.to_owned();
        self.eos_held = false;
        self.app_seeked = false;
        self.awaiting = None;
        if let Some(position_ns) = self.handoff_at.take() {
            self.state = GateState::Seeking;
            return Decision::Seek {
                position_ns,
                why: SeekFor::Handoff,
            };
        }
        match (mode, first_ns) {
            (ResumeMode::Off, _) | (_, None) => {
                self.state = GateState::Open;
                Decision::None
            }
            (ResumeMode::Auto, Some(_)) => {
                self.state = GateState::Hold;
                self.awaiting = Some(self.generation);
                Decision::Lookup {
                    generation: self.generation,
                }
            }
            (ResumeMode::Ask, Some(_)) => {
                self.state = GateState::Open;
                self.awaiting = Some(self.generation);
                Decision::Lookup {
                    generation: self.generation,
                }
            }
        }
    }

    /// The lookup could not be asked for (the network side is gone): play on.
    pub fn on_lookup_unavailable(&mut self) -> Decision {
        self.awaiting = None;
        self.open()
    }

    /// The answer to [`Decision::Lookup`]: the resume point, if the rules say to resume.
    pub fn on_lookup(&mut self, generation: u64, found: Option<ResumeFrom>) -> Decision {
        if self.awaiting != Some(generation) {
            return Decision::None;
        }
        self.awaiting = None;
        if std::mem::take(&mut self.app_seeked) {
            // The application's seek is on its way (or done): it wins.
            return match self.state {
                GateState::Open => Decision::None,
                _ => self.open(),
            };
        }
        match (self.mode, found) {
            (ResumeMode::Auto, Some(from)) => {
                self.state = GateState::Seeking;
                let position_ns = match from.live {
                    Some(_) => from.position_ns + PULL_LEAD_NS,
                    None => from.position_ns,
                };
                Decision::Seek {
                    position_ns,
                    why: SeekFor::Resume {
                        media_id: self.media_id.clone(),
                        from,
                    },
                }
            }
            (ResumeMode::Ask, Some(from)) => Decision::Offer {
                media_id: self.media_id.clone(),
                from,
            },
            _ => self.open(),
        }
    }

    /// A handoff target must preroll again at `position_ns` (the media is loaded).
    pub fn on_preroll(&mut self, position_ns: u64) -> Decision {
        self.handoff_at = None;
        self.state = GateState::Seeking;
        Decision::Seek {
            position_ns,
            why: SeekFor::Handoff,
        }
    }

    /// The seek asked for could not be made: play on from where the stream is.
    pub fn on_seek_failed(&mut self) -> Decision {
        self.open()
    }

    /// A seek from downstream (the application). Returns whether it is the application's
    /// seek that wins over the pending decision.
    pub fn on_app_seek(&mut self) -> bool {
        if self.state == GateState::Hold {
            self.state = GateState::Seeking;
            self.app_seeked = true;
            return true;
        }
        false
    }

    /// The end of a flush: buffers from the new position may pass, and an EOS held back
    /// before it is gone.
    pub fn on_flush_stop(&mut self) {
        self.eos_held = false;
        if self.state == GateState::Seeking {
            self.state = GateState::Open;
        }
    }

    /// An EOS reached the element: true when the gate keeps it back (it is then sent on by a
    /// later [`Decision::Open`]).
    pub fn on_eos(&mut self) -> bool {
        if self.state == GateState::Open {
            return false;
        }
        self.eos_held = true;
        true
    }

    /// A seek the gate asked for was made but its flush never came (an upstream that takes
    /// seeks but does not carry them out): after a grace period, let buffers through.
    pub fn on_seek_grace_over(&mut self) -> Decision {
        match self.state {
            GateState::Seeking => self.open(),
            _ => Decision::None,
        }
    }

    /// Neither the decision nor its seek came in time (a network side that is wedged):
    /// play on from here.
    pub fn give_up(&mut self) -> Decision {
        self.awaiting = None;
        self.open()
    }

    fn open(&mut self) -> Decision {
        self.state = GateState::Open;
        Decision::Open {
            release_eos: std::mem::take(&mut self.eos_held),
        }
    }
}
