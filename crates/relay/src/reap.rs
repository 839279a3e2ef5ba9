//! Closing the public ports of runs that ended while their node could not say so.
//!
//! A node's agent unpublishes a run's ports as it stops the run; but a run cancelled
//! while its agent is down (or cut off from the control plane) would keep its public
//! ports, bound and refusing, until the agent came back. So the relay asks the control
//! plane itself, every [`EVERY`], which of the runs it carries have ended (`POST
//! /v1/relays/ended-runs` with its relay key, or the store directly in `gantry server
//! --relay`) and closes their ports: within a second of the end, whatever the node does.
//! A run the agent publishes again after that (its tunnel comes back before it has
//! stopped the run) is closed again on the next round.
//!
//! Cheap by construction: nothing is asked while nothing is published; a round is one
//! request per [`MAX_ASK`] runs (one indexed query on the control plane's side).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::public::PublicPorts;

/// Asks the control plane which of the given runs ended; `Err` says why it could not.
pub type Ask = Arc<dyn Fn(Vec<uuid::Uuid>) -> BoxFuture<'static, Result<Vec<uuid::Uuid>, String>> + Send + Sync>;

/// How often the relay asks: half a second, so that a port closes within a second of
/// its run's end with time left for the request.
pub const EVERY: Duration = Duration::from_millis(500);

/// Most runs asked about in one request (the endpoint's bound).
pub const MAX_ASK: usize = 1000;

/// How long one round waits for an answer before trying again next round.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes the ports of ended runs every `every` until the returned task is aborted.
pub fn reap(ports: Arc<PublicPorts>, ask: Ask, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match round(&ports, &ask).await {
                Ok(()) => failing = false,
                // Said once per outage, not twice a second.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot ask the control plane which runs ended; will retry");
                }
                Err(_) => {}
            }
        }
    })
}

/// One round: asks about every published run and closes the ended ones' ports.
async fn round(ports: &PublicPorts, ask: &Ask) -> Result<(), String> {
    let mut runs = Vec::new();
    for run in ports.published_runs() {
        match uuid::Uuid::parse_str(&run) {
            Ok(id) => runs.push(id),
            // Not a run id at all, so no run of the control plane: nothing to carry.
            Err(_) => ports.unpublish_run(&run),
        }
    }
    for chunk in runs.chunks(MAX_ASK) {
        let ended = tokio::time::timeout(ASK_TIMEOUT, ask(chunk.to_vec()))
            .await
            .map_err(|_| format!("no answer within {ASK_TIMEOUT:?}"))??;
        for run in ended {
            let run = run.hyphenated().to_string();
            tracing::info!(run = %run, "the run ended: closing its public ports");
            ports.unpublish_run(&run);
        }
    }
    Ok(())
}
