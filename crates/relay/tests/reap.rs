//! The relay's reaper on loopback: public ports bound for three runs (no tunnel
//! needed: a port stays bound while its node is away), and a control plane stand-in
//! that says which runs ended. The ended run's port closes and its number is free
//! again; a live run's port stays; a "run" that is no uuid is closed without asking;
//! a control plane that fails changes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_relay::edge::Tunnels;
use gantry_relay::port::PortLimits;
use gantry_relay::public::PublicPorts;
use gantry_relay::reap::{Ask, reap};
use tokio::net::TcpStream;

/// Polls `check` every 10 ms until it holds, for at most `within`.
async fn until(what: &str, within: Duration, check: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

#[tokio::test]
async fn the_ports_of_runs_the_control_plane_says_ended_close() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first = probe.local_addr().unwrap().port().min(64_000);
    drop(probe);
    let ports = Arc::new(PublicPorts::new(
        "relay.test",
        "127.0.0.1".parse().unwrap(),
        (first, first + 20),
        Tunnels::default(),
        PortLimits::default(),
    ));
    let (ended, live) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let ended_port = ports.publish("n1", &ended.to_string(), 22, &[], None).unwrap();
    let ended_port_2 = ports.publish("n1", &ended.to_string(), 8080, &[], None).unwrap();
    let live_port = ports.publish("n1", &live.to_string(), 22, &[], None).unwrap();
    let bogus_port = ports.publish("n2", "not-a-run", 22, &[], None).unwrap();
    assert!(open(ended_port).await && open(live_port).await && open(bogus_port).await);

    // First a control plane that cannot answer: nothing but the bogus run closes.
    let asked: Arc<Mutex<Vec<Vec<uuid::Uuid>>>> = Arc::default();
    let failing: Ask = {
        let asked = asked.clone();
        Arc::new(move |runs| {
            asked.lock().unwrap().push(runs);
            Box::pin(async { Err("unreachable".to_string()) })
        })
    };
    let task = reap(ports.clone(), failing, Duration::from_millis(20));
    until("the bogus run's port to close", Duration::from_secs(2), async || !open(bogus_port).await).await;
    until("a few rounds", Duration::from_secs(2), async || asked.lock().unwrap().len() >= 3).await;
    task.abort();
    assert!(open(ended_port).await && open(live_port).await, "a failed answer closes nothing");
    let mut first_ask = asked.lock().unwrap()[0].clone();
    first_ask.sort();
    let mut expected = vec![ended, live];
    expected.sort();
    assert_eq!(first_ask, expected, "each run once, the bogus one not asked about");

    // Then one that says `ended` ended.
    let answering: Ask =
        Arc::new(move |runs| Box::pin(async move { Ok(runs.into_iter().filter(|r| *r == ended).collect()) }));
    let task = reap(ports.clone(), answering, Duration::from_millis(20));
    until("the ended run's ports to close", Duration::from_secs(2), async || {
        !open(ended_port).await && !open(ended_port_2).await
    })
    .await;
    std::net::TcpListener::bind(("127.0.0.1", ended_port)).expect("the port is free again");
    assert!(open(live_port).await, "the live run keeps its port");
    assert_eq!(ports.published_runs(), [live.to_string()]);
    task.abort();
}
