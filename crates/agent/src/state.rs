//! What an agent remembers across restarts, in one small JSON file in its state
//! directory: which node it is (so a restart re-attaches to the same node and keeps
//! its lease), the id its containers are labelled with, and how far each run's
//! output was acknowledged by the control plane (so a restarted agent neither loses
//! nor repeats output). Written atomically (temporary file, fsync, rename).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gantry_types::{JobRunId, NodeId};
use serde::{Deserialize, Serialize};

/// The persisted state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Label value on this agent's containers (stable for the state directory's life).
    pub agent_id: String,
    /// The node this agent registered as.
    #[serde(default)]
    pub node_uuid: Option<NodeId>,
    /// The control plane it registered with (a different one means a different node).
    #[serde(default)]
    pub server_url: Option<String>,
    /// Acknowledged output position per run.
    #[serde(default)]
    pub log_cursors: HashMap<JobRunId, String>,
}

/// The state file of a state directory.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// `DIR/agent.json`.
    pub fn in_dir(dir: &Path) -> Self {
        Self { path: dir.join("agent.json") }
    }

    /// Reads the state, creating a fresh one (new agent id) when there is none.
    pub fn load_or_create(&self) -> std::io::Result<AgentState> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!("{} is not a Gantry agent state file: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = AgentState { agent_id: format!("agent-{}", uuid_like()), ..Default::default() };
                self.save(&state)?;
                Ok(state)
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces the file with `state`.
    pub fn save(&self, state: &AgentState) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_keeps_its_agent_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        let mut first = file.load_or_create().unwrap();
        assert!(first.agent_id.starts_with("agent-"));
        first.node_uuid = Some(NodeId::new());
        first.log_cursors.insert(JobRunId::new(), "2026-11-28T00:00:00Z".into());
        file.save(&first).unwrap();
        assert_eq!(file.load_or_create().unwrap(), first);
        std::fs::write(dir.path().join("agent.json"), "nope").unwrap();
        assert!(file.load_or_create().unwrap_err().to_string().contains("not a Gantry agent state file"));
    }
}
