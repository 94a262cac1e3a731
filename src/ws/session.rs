//! The WebSocket session: one server-side connection's protocol state, sans-IO.
//!
//! Owns: the streaming [`Decoder`], the closing handshake (RFC 6455 §7: the peer closed, we
//! closed and wait for the peer's close, the connection failed), ping liveness (silent for a
//! tick: ping; silent for the next one too: dead), and what the connection leaves its room with
//! (close code, reason, error). Does not own: sockets, reading, timers, the outbound queue,
//! rooms or parties. Its driver (`runtime::ws_conn`) reads into a buffer and calls
//! [`Session::feed`], reports events ([`Session::on_eof`], [`Session::on_read_error`],
//! [`Session::on_local_close`], [`Session::on_close_timeout`], [`Session::tick`]), performs the
//! [`Action`]s the session hands out, and does what [`Session::step`] says next.
//!
//! # States
//!
//! ```text
//! Open --peer Close--> PeerClosed      echo its code; flush, close TCP
//! Open --our close---> Closing         read on (data dropped) until the peer's Close, EOF or
//!                                      the close timeout; then close TCP
//! Open --bad frame---> Failed          our close (the error's code); flush, linger, close TCP
//! any  --EOF, read error, dead peer, close timeout--> Ended: leave now
//! ```
//!
//! Liveness is one rule for every driver (the core's poller sweeping parked connections, or a
//! connection's own task): [`Session::tick`] is called once per ping interval; any byte fed
//! since the last tick means alive, the first silent tick asks for a ping, the second one in a
//! row declares the peer dead.
//!
//! The hot path stays concrete: [`Session::feed`] takes the action handler as a generic closure
//! and allocates nothing per message (only the peer's close reason is copied, once).

use std::{fmt, io};

use super::{
    close,
    error::WsError,
    message::{Decoder, Message},
};

/// What the driver does for the session while it decodes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// A complete text or binary message for the application.
    Deliver(Message<'a>),
    /// A data message that arrived after our close frame: it is not delivered (the
    /// application has closed), only counted.
    Dropped,
    /// Answer a ping: queue a pong carrying this payload.
    Pong(&'a [u8]),
    /// The peer closed: queue the echo of its code (`None`: an empty close gets an empty one,
    /// RFC 6455 §5.5.1), then close TCP once it is out.
    EchoClose(Option<u16>),
    /// Fail the connection (§7.1.7): queue a close frame with `err.close_code()` and
    /// `err.reason()`. Nothing more is decoded.
    Fail(WsError),
}

/// Where the driver's sending side stands after an action: the application may close the
/// connection while it handles a message, and a full outbound queue closes it too.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    Open,
    /// Our side has closed, with this close code (`None`: the queue was shut without one).
    Closed(Option<u16>),
}

/// What the driver does next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Open: wait for more bytes, ticking for liveness.
    Read,
    /// We closed: read on (data is dropped) until the peer's close frame, EOF, or the close
    /// timeout ([`Session::on_close_timeout`]).
    AwaitClose,
    /// The peer closed: let what is queued out (at most the close timeout), then close TCP.
    Flush,
    /// The connection failed: let our close frame out, then linger (read and drop until EOF, at
    /// most the close timeout: closing with unread bytes would make the kernel send a reset
    /// that can destroy our close frame), then close TCP.
    FlushAndLinger,
    /// Nothing more to do: leave the room now.
    Leave,
}

impl Step {
    /// The session still wants the peer's bytes.
    pub fn reads(self) -> bool {
        matches!(self, Step::Read | Step::AwaitClose)
    }
}

/// A [`Session::tick`]'s verdict.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from since the last tick (or not open: the close timeout governs then).
    Alive,
    /// Silent since the last tick: send a ping.
    Ping,
    /// Silent since the ping: the peer is gone; leave.
    Dead,
}

/// Why a connection failed, for the application's `on_error`.
#[derive(Debug)]
pub enum Failure {
    /// The peer broke the protocol; our close frame carried its code.
    Protocol(WsError),
    /// Reading the socket failed.
    Read(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Protocol(e) => e.fmt(f),
            Failure::Read(e) => write!(f, "read failed: {e}"),
        }
    }
}

/// What the connection leaves its room with.
#[derive(Debug)]
pub struct Leave {
    /// The peer's close code (1005 if its close had none), else ours, else 1006 (abnormal: no
    /// close frame either way).
    pub code: u16,
    /// The peer's close reason, if it sent one.
    pub reason: String,
    pub error: Option<Failure>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// We sent our close frame and wait for the peer's.
    Closing,
    /// The peer's close frame arrived.
    PeerClosed,
    /// A protocol error failed the connection (`protocol_error` says which).
    Failed,
    /// EOF, a read error, a dead peer or the close timeout.
    Ended,
}

/// See `Session::ending`.
#[derive(Debug)]
enum Ending {
    /// The peer's close frame: its code (1005 if it had none) and reason.
    PeerClose(u16, String),
    ReadError(io::Error),
}

/// One connection's protocol state. See the module docs.
pub struct Session {
    decoder: Decoder,
    /// How the peer ended it, for `leave`: its close frame, or a failed read (never both: a
    /// session reads nothing after the peer's close). Boxed and shared: it arrives once, at the
    /// end, and would otherwise sit in every idle connection.
    ending: Option<Box<Ending>>,
    /// The protocol error that failed the connection, kept for `leave` through later events.
    protocol_error: Option<WsError>,
    state: State,
    /// The close code we sent, 0 until our side closes.
    our_code: u16,
    /// Bytes were fed since the last tick.
    heard: bool,
    /// The last tick asked for a ping, and nothing was heard since.
    pinged: bool,
}

// One per open WebSocket, most of them idle: the decoder and 16 bytes.
const _: () = assert!(std::mem::size_of::<Session>() <= std::mem::size_of::<Decoder>() + 16);

impl Session {
    /// A session over `decoder` (its limits and permessage-deflate as negotiated).
    pub fn new(decoder: Decoder) -> Self {
        Session {
            decoder,
            ending: None,
            protocol_error: None,
            state: State::Open,
            our_code: 0,
            heard: false,
            pinged: false,
        }
    }

    /// What the driver does next.
    pub fn step(&self) -> Step {
        match self.state {
            State::Open => Step::Read,
            State::Closing => Step::AwaitClose,
            State::PeerClosed => Step::Flush,
            State::Failed => Step::FlushAndLinger,
            State::Ended => Step::Leave,
        }
    }

    /// Neither side has started to close, nor has the connection ended.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Decodes `data` (all of it; unmasked in place) and hands every resulting [`Action`] to
    /// `act`, which performs it and reports where our sending side stands afterwards.
    pub fn feed<F>(&mut self, data: &mut [u8], mut act: F) -> Step
    where
        F: FnMut(Action<'_>) -> Outbound,
    {
        if !data.is_empty() {
            self.heard = true;
        }
        if !self.step().reads() {
            return self.step();
        }
        let Session {
            decoder,
            ending,
            state,
            our_code,
            ..
        } = self;
        let result = decoder.feed(data, &mut |msg| {
            let open = *state == State::Open;
            let out = match msg {
                Message::Text(_) | Message::Binary(_) if open => act(Action::Deliver(msg)),
                Message::Text(_) | Message::Binary(_) => act(Action::Dropped),
                Message::Ping(payload) if open => act(Action::Pong(payload)),
                Message::Ping(_) | Message::Pong(_) => return,
                Message::Close { code, reason } => {
                    *ending = Some(Box::new(Ending::PeerClose(
                        code.unwrap_or(close::NO_STATUS),
                        reason.to_owned(),
                    )));
                    *state = State::PeerClosed;
                    if !open {
                        return; // our close is out already: that was the handshake's end
                    }
                    act(Action::EchoClose(code))
                }
            };
            if let Outbound::Closed(code) = out {
                local_close(state, our_code, code);
            }
        });
        if let Err(e) = result {
            if self.state == State::Open {
                self.our_code = e.close_code();
                act(Action::Fail(e));
            }
            self.state = State::Failed;
            self.protocol_error = Some(e);
        }
        self.step()
    }

    /// The peer closed TCP (or the connection is otherwise gone): leave. What was learnt
    /// before (the peer's close, a protocol error) is still what it leaves with.
    pub fn on_eof(&mut self) -> Step {
        self.state = State::Ended;
        Step::Leave
    }

    /// Reading failed: leave, reporting `err`.
    pub fn on_read_error(&mut self, err: io::Error) -> Step {
        if self.ending.is_none() {
            self.ending = Some(Box::new(Ending::ReadError(err)));
        }
        self.on_eof()
    }

    /// Our side closed (the application, a full queue, a shutdown), with `code` if a close
    /// frame was queued. Only the first code counts.
    pub fn on_local_close(&mut self, code: Option<u16>) -> Step {
        local_close(&mut self.state, &mut self.our_code, code);
        self.step()
    }

    /// The close timeout passed while waiting for the peer's close frame: give up on it.
    pub fn on_close_timeout(&mut self) -> Step {
        if self.state == State::Closing {
            self.state = State::Ended;
        }
        self.step()
    }

    /// One liveness tick (once per ping interval); see the module docs.
    pub fn tick(&mut self) -> Liveness {
        if self.state != State::Open {
            return Liveness::Alive;
        }
        if std::mem::take(&mut self.heard) {
            self.pinged = false;
            Liveness::Alive
        } else if self.pinged {
            self.state = State::Ended;
            Liveness::Dead
        } else {
            self.pinged = true;
            Liveness::Ping
        }
    }

    /// What the connection leaves its room with (the peer's close reason is moved out).
    pub fn leave(&mut self) -> Leave {
        let ours = match self.our_code {
            0 => close::ABNORMAL,
            code => code,
        };
        let (code, reason, read_error) = match self.ending.take().map(|b| *b) {
            Some(Ending::PeerClose(code, reason)) => (code, reason, None),
            Some(Ending::ReadError(e)) => (ours, String::new(), Some(e)),
            None => (ours, String::new(), None),
        };
        let error = match self.protocol_error {
            Some(e) => Some(Failure::Protocol(e)),
            None => read_error.map(Failure::Read),
        };
        Leave {
            code,
            reason,
            error,
        }
    }
}

/// Our side closed: an open session now waits for the peer's close; the first code is kept.
fn local_close(state: &mut State, our_code: &mut u16, code: Option<u16>) {
    if *state == State::Open {
        *state = State::Closing;
    }
    if *our_code == 0 {
        *our_code = code.unwrap_or(0);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
