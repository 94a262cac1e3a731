//! Token authentication with the `on_before_*` hooks.
//!
//! ```sh
//! TOKENS="secret,alice:hunter2" cargo run --release --example auth    # PORT=1999 by default
//! ```
//!
//! `TOKENS` is a comma-separated list (default `secret`); an entry is `user:token`, or a bare
//! `token` whose user is `user<N>` (its position in the list, from 1).
//!
//! - WebSocket `ws://127.0.0.1:1999/parties/auth/<room>?token=<token>` (browsers cannot set
//!   headers on a WebSocket, hence the query): without a token, or with a bad one, the upgrade is
//!   answered `401` and never reaches the room. Once in, you are greeted by name and every text
//!   message you send is broadcast to the room as `<user>: <text>`.
//! - HTTP `http://127.0.0.1:1999/parties/auth/<room>` with `Authorization: Bearer <token>`:
//!   `GET` answers `{"you":<user>,"online":[<users in the room>]}`, `POST` broadcasts its body
//!   to the room as `<user>: <body>`. No or a bad token: `401`.
//!
//! The hooks run on whichever core accepted the connection, before the room (which may live on
//! another core) is involved; they pass the user on as an `X-User` header, which the room reads.

use std::sync::Arc;

use partyring::{
    party::{method_not_allowed, Before, ConnectContext, Connection, Party, Reply, Request},
    room::Room,
    Config, Message, Method, Response, Server,
};
use serde::{Deserialize, Serialize};

/// The header the hooks set for the room. A client cannot forge it: `Before::SetHeaders`
/// replaces any header of the same name the client sent, and a request without a valid token
/// never gets past the hook.
const USER_HEADER: &str = "X-User";

/// The party. Each core gets its own instance (made by the factory in `main`), sharing the
/// token list read once at start.
struct Auth {
    /// `(token, user)` pairs.
    tokens: Arc<Vec<(String, String)>>,
}

/// What we keep on each connection (`conn.set_state`, at most 2 KiB as JSON).
#[derive(Serialize, Deserialize)]
struct User {
    name: String,
}

impl Auth {
    /// The user a token belongs to.
    fn user_for(&self, token: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, user)| user.as_str())
    }

    /// The hooks' common decision: let the request through with `X-User` set, or answer 401.
    fn check(&self, token: Option<&str>) -> Before {
        match token {
            None => Before::unauthorized("Missing token"),
            Some(token) => match self.user_for(token) {
                Some(user) => Before::SetHeaders(vec![(USER_HEADER.into(), user.into())]),
                None => Before::unauthorized("Invalid token"),
            },
        }
    }
}

impl Party for Auth {
    /// WebSocket upgrades: the token is the `?token=` query parameter.
    fn on_before_connect(&self, req: &Request<'_>) -> Before {
        self.check(req.query_param("token").as_deref())
    }

    /// Every other HTTP request: `Authorization: Bearer <token>`. (Party-to-party fetches skip
    /// this hook, as in PartyKit: other parties of this server are trusted.)
    fn on_before_request(&self, req: &Request<'_>) -> Before {
        let token = req
            .header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        self.check(token)
    }

    fn on_connect(&self, room: &mut Room, conn: &Connection, ctx: &ConnectContext<'_>) {
        // `ctx.request` is the upgrade request as the hook rewrote it.
        let name = ctx.request.header(USER_HEADER).unwrap_or("anonymous");
        if let Err(e) = conn.set_state(&User { name: name.into() }) {
            // Only a value over 2 KiB fails; a user name from our own token list is not.
            conn.close(1011, &e);
            return;
        }
        conn.send_text(&format!("welcome, {name}"));
        room.broadcast_text(&format!("{name} joined"), &[conn.id()]);
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        let Message::Text(text) = msg else {
            return;
        };
        let name = user_name(sender);
        room.broadcast_text(&format!("{name}: {text}"), &[]);
    }

    fn on_close(&self, room: &mut Room, conn: &Connection, _code: u16, _reason: &str) {
        room.broadcast_text(&format!("{} left", user_name(conn)), &[]);
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        let you = req.header(USER_HEADER).unwrap_or("anonymous");
        match req.method {
            Method::Get => {
                let online: Vec<String> = room.connections().map(user_name).collect();
                let body = serde_json::json!({ "you": you, "online": online });
                Response::json(200, body.to_string().into_bytes()).into()
            }
            Method::Post => {
                let text = String::from_utf8_lossy(req.body);
                room.broadcast_text(&format!("{you}: {text}"), &[]);
                Response::text(200, "OK").into()
            }
            _ => method_not_allowed("GET, POST").into(),
        }
    }
}

/// The name `on_connect` stored on the connection.
fn user_name(conn: &Connection) -> String {
    conn.state::<User>()
        .map_or_else(|| "anonymous".into(), |u| u.name)
}

/// Compares without returning early at the first difference, so the time taken does not tell
/// an attacker how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `TOKENS` as `(token, user)` pairs.
fn parse_tokens(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(i, entry)| match entry.split_once(':') {
            Some((user, token)) => (token.to_owned(), user.to_owned()),
            None => (entry.to_owned(), format!("user{}", i + 1)),
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let tokens = Arc::new(parse_tokens(
        &std::env::var("TOKENS").unwrap_or_else(|_| "secret".into()),
    ));
    let users: Vec<&str> = tokens.iter().map(|(_, u)| u.as_str()).collect();
    let users = users.join(", ");

    // The factory runs once per core; it must be `Send + Sync`, the party it makes need not be.
    let server = Server::builder()
        .config(example_config("auth"))
        .party("auth", move || Auth {
            tokens: tokens.clone(),
        })
        .start()?;
    println!("listening on http://{}", server.addr);
    println!(
        "  ws://{0}/parties/auth/<room>?token=..   curl -H 'Authorization: Bearer ..' http://{0}/parties/auth/<room>",
        server.addr
    );
    println!("  users: {users}");
    server.wait();
    Ok(())
}

/// `Config::new()` defaults, with the port from `PORT` (default 1999) and this example's own
/// data directory, so it never mixes its storage with the `partyring` binary's `.partyring/`.
fn example_config(name: &str) -> Config {
    let mut config = Config::new();
    config.port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1999);
    config.data_dir = format!(".partyring-example-{name}").into();
    // Several nodes behind a load balancer: party fetches go through it (docs/deploy.md).
    config.fetch_entry = std::env::var("PARTYRING_FETCH_ENTRY")
        .ok()
        .and_then(|a| a.parse().ok());
    config
}
