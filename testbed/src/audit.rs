//! Who asks the lab's kube-apiserver what: its audit log (every request's metadata, one JSON
//! line per stage) counted per user, between two marks, for the benches' API load.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The lab's audit log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pub path: PathBuf,
}

impl AuditLog {
    pub fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_path_buf(),
        }
    }

    /// Where the log ends now: requests after this mark are counted by [`AuditLog::since`].
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Requests per user logged after `mark`.
    pub fn since(&self, mark: u64) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(mark))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(requests_by_user(&text))
    }
}

/// Requests per user in audit log lines: each once, when its response is complete, or for a
/// watch (which completes only when it ends) when it starts. Lines that are not audit events
/// (a partial last line) are skipped.
pub fn requests_by_user(lines: &str) -> BTreeMap<String, u64> {
    let mut by_user = BTreeMap::new();
    for line in lines.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let watch = event["verb"] == "watch";
        let counted = match event["stage"].as_str() {
            Some("ResponseStarted") => watch,
            Some("ResponseComplete") | Some("Panic") => !watch,
            _ => false,
        };
        if counted && let Some(user) = event["user"]["username"].as_str() {
            *by_user.entry(user.to_string()).or_insert(0) += 1;
        }
    }
    by_user
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(user: &str, verb: &str, stage: &str) -> String {
        serde_json::json!({"kind": "Event", "stage": stage, "verb": verb, "user": {"username": user}})
            .to_string()
    }

    #[test]
    fn a_request_counts_once_and_a_watch_when_it_starts() {
        let log = [
            line("system:serviceaccount:a:x", "get", "ResponseComplete"),
            line("system:serviceaccount:a:x", "watch", "ResponseStarted"),
            line("system:serviceaccount:a:x", "watch", "ResponseComplete"),
            line("system:serviceaccount:b:y", "update", "ResponseComplete"),
            line("system:serviceaccount:b:y", "update", "ResponseComplete"),
            "{\"kind\": \"Ev".to_string(),
        ]
        .join("\n");
        let counted = requests_by_user(&log);
        assert_eq!(counted["system:serviceaccount:a:x"], 2);
        assert_eq!(counted["system:serviceaccount:b:y"], 2);
        assert_eq!(counted.len(), 2);
    }
}
