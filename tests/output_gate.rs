//! The output gate for any party's HTTP answers, in-process: a handler that writes to storage
//! and answers at once has its answer held until the write is durable, and replaced by 503
//! (with `Retry-After`) if the write fails, whose value then reads as it was before.
//!
//! Its own test binary because the fault plan (`write-eio@2`: the core's second log write
//! fails) is installed for the whole process.

mod common;

use common::{temp_dir, Client};
use partyring::{
    http::Response,
    party::{Party, Reply, Request},
    room::Room,
    storage::faults::{self, FaultPlan},
    Server,
};

/// `POST` adds one to a stored counter and answers the new value at once (`Reply::Now`, no
/// await: the gate is what holds the answer); `GET` answers the stored value.
struct Counter;

impl Party for Counter {
    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        let store = room.storage();
        let n = store.get_json::<u64>("n").unwrap_or(0);
        if req.method == partyring::http::Method::Post {
            drop(store.put_json("n", &(n + 1)));
            return Response::text(200, (n + 1).to_string()).into();
        }
        Response::text(200, n.to_string()).into()
    }
}

#[test]
fn an_answer_derived_from_a_failed_write_is_replaced_by_503() {
    faults::install("write-eio@2".parse::<FaultPlan>().unwrap());
    let dir = temp_dir("gate");
    let mut config = common::config(1);
    config.persist = true;
    config.data_dir = dir.clone();
    let server = Server::builder()
        .config(config)
        .party("counter", || Counter)
        .start()
        .expect("server starts");
    let mut c = Client::connect(server.addr);
    let mut call = |method: &str| {
        let req =
            format!("{method} /parties/counter/r HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        c.request(req.as_bytes())
    };
    assert_eq!(call("POST").text(), "1");
    let failed = call("POST");
    assert_eq!(failed.status, 503, "{}", failed.text());
    assert!(failed.header("Retry-After").is_some());
    assert!(
        failed.text().starts_with("Not stored: "),
        "{}",
        failed.text()
    );
    assert_eq!(call("GET").text(), "1", "the failed write is not readable");
    assert_eq!(call("POST").text(), "2", "the next write succeeds");
    drop(c);
    assert!(server.shutdown(std::time::Duration::from_secs(5)));
    let _ = std::fs::remove_dir_all(&dir);
}
