//! Dead letters (`GET /admin/deadletters`, `POST /admin/deadletters/redrive`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /admin/deadletters`: how many there are, and the first of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    pub count: usize,
    pub dead_letters: Vec<DeadLetter>,
}

/// A dead letter as shown: the body as JSON when it is JSON (secrets replaced by
/// `"***"`), else its first 1,024 characters as a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub group_id: String,
    pub dedup_id: String,
    pub receive_count: u32,
    pub body: Value,
}

/// `POST /admin/deadletters/redrive`: how many went back to the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    pub redriven: usize,
}
